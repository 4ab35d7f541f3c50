"""The Quickstart of chordflow.flow: functions wired by Depends, each run once.

Run it from the repository's root (it needs nothing but chordflow installed):

    python examples/flow_quickstart.py

and the same workflow as recorded steps, embedded or on Celery workers:

    chordflow run examples.flow_quickstart:workflow
    chordflow run examples.flow_quickstart:workflow --executor celery
    chordflow graph examples.flow_quickstart:workflow
"""

import asyncio

from chordflow.flow import Depends, Workflow


async def create_person(person_name: str) -> dict:
    return {'name': person_name}


async def create_hi(p=Depends(create_person)) -> str:
    print('Creating hi')
    return 'Hi ' + p['name']


async def say_hi(p=Depends(create_person), blessing=Depends(create_hi)) -> int:
    print(p, blessing, 'Once')
    return 1


async def say_hi_twice(p=Depends(create_person), blessing=Depends(create_hi)) -> int:
    print(p, blessing, 'Twice')
    return 2


#: For the command line (`chordflow run examples.flow_quickstart:workflow`): the
#: entry point's argument is a default, which `-e create_person='["Ann"]'` overrides.
workflow = Workflow(say_hi, say_hi_twice, name="quickstart",
                    entry_points={create_person: ['Joe Mama']})


async def main():
    workflow = Workflow(say_hi, say_hi_twice)
    result1, result2 = await workflow.run(entry_points={create_person: ['Joe Mama',]})
    print(result1, result2)


if __name__ == "__main__":
    asyncio.run(main())
