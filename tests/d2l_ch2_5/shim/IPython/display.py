"""``display.display(fig)`` and ``display.clear_output(wait=True)``, which the book's Animator calls: no-ops here."""


def display(*objs, **kwargs):
    return None


def clear_output(wait=False):
    return None
