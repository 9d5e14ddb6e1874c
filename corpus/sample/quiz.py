"""An interactive arithmetic quiz for the terminal."""

QUESTIONS = [("2 + 2", 4), ("3 * 7", 21), ("10 - 4", 6)]


def ask(prompt: str) -> str:
    """Show the prompt and return what the player typed."""
    return input(prompt + " = ").strip()


def play():
    score = 0
    for text, answer in QUESTIONS:
        if ask(text) == str(answer):
            score += 1
    print(f"You scored {score}/{len(QUESTIONS)}")


if __name__ == "__main__":
    play()
