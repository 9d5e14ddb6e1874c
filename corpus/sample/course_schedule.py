"""Ordering courses so that prerequisites come first (Kahn's algorithm)."""

from collections import deque


def course_order(num_courses: int, prerequisites: list[list[int]]) -> list[int]:
    """A valid order to take courses 0..num_courses-1, or [] if none exists.

    Each prerequisite pair ``[course, required]`` means ``required`` must be
    taken before ``course``. Among available courses the smallest number goes first.

    >>> course_order(4, [[1, 0], [2, 0], [3, 1], [3, 2]])
    [0, 1, 2, 3]
    >>> course_order(2, [[0, 1], [1, 0]])
    []
    """
    if num_courses <= 0:
        return []
    indegree = [0] * num_courses
    followers = [[] for _ in range(num_courses)]
    for course, required in prerequisites:
        if 0 <= course < num_courses and 0 <= required < num_courses:
            followers[required].append(course)
            indegree[course] += 1
    ready = deque(sorted(c for c in range(num_courses) if indegree[c] == 0))
    order = []
    while ready:
        current = ready.popleft()
        order.append(current)
        for nxt in sorted(followers[current]):
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                ready.append(nxt)
    return order if len(order) == num_courses else []
