"""Type-checked by tests/flow/test_typing.py: mypy refuses a Depends parameter
annotated with another type than the dependency returns."""

from chordflow.flow import Depends


async def create_person(person_name: str) -> dict[str, str]:
    return {"name": person_name}


async def wrong(p: int = Depends(create_person)) -> int:
    return p
