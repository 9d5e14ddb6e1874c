"""A tiny bank account model that refuses overdrafts."""


class InsufficientFunds(Exception):
    pass


class Account:
    def __init__(self, balance=0):
        self.balance = balance
        self.history = []

    def deposit(self, amount):
        self.balance += amount
        self.history.append(("deposit", amount))

    def withdraw(self, amount):
        if amount > self.balance:
            raise InsufficientFunds(f"cannot withdraw {amount} from {self.balance}")
        self.balance -= amount
        self.history.append(("withdraw", amount))


def apply_transactions(balance: int, amounts: list[int]) -> dict[str, int]:
    """Apply deposits (positive) and withdrawals (negative) to an account.

    Withdrawals that would overdraw the account are rejected and counted.

    Args:
        balance: the opening balance.
        amounts: signed transaction amounts, applied in order.

    Returns:
        The closing balance and the number of rejected withdrawals.

    >>> apply_transactions(100, [50, -30, -200, 10])
    {'balance': 130, 'rejected': 1}
    """
    account = Account(balance)
    rejected = 0
    for amount in amounts:
        try:
            if amount >= 0:
                account.deposit(amount)
            else:
                account.withdraw(-amount)
        except InsufficientFunds:
            rejected += 1
    return {"balance": account.balance, "rejected": rejected}
