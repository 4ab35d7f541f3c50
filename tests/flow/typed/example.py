"""Type-checked by tests/flow/test_typing.py: what mypy sees of Depends and Map.

mypy takes a parameter's type from its annotation only (pyright and Pylance also infer
it from the default), so ``Depends`` is typed to *be* the dependency's result: the
revealed types below, and a wrong annotation is an error (wrong.py).
"""

from chordflow.flow import Depends, Map, Workflow, step


async def create_person(person_name: str) -> dict[str, str]:
    return {"name": person_name}


def numbers() -> list[int]:
    return [1, 2, 3]


@step(retries=2)
def label(x: int) -> str:
    return str(x)


async def greet(p: dict[str, str] = Depends(create_person),
                labels: list[str] = Map(label, over=Depends(numbers))) -> str:
    reveal_type(p)  # noqa: F821
    return p["name"] + ",".join(labels)


reveal_type(Depends(create_person))  # noqa: F821
reveal_type(Depends(numbers))  # noqa: F821
reveal_type(Map(label, over=Depends(numbers)))  # noqa: F821
reveal_type(label)  # noqa: F821
workflow = Workflow(greet)
