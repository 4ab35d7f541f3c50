"""The JFlow README's Quickstart with only its import line changed: same output, byte
for byte, every time (a subprocess each, as a user runs it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

QUICKSTART = """\
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

async def main():
    workflow = Workflow(say_hi, say_hi_twice)
    result1, result2 = await workflow.run(entry_points={create_person: ['Joe Mama',]})
    print(result1, result2)

asyncio.run(main())
"""

EXPECTED = (b"Creating hi\n"
            b"{'name': 'Joe Mama'} Hi Joe Mama Once\n"
            b"{'name': 'Joe Mama'} Hi Joe Mama Twice\n"
            b"1 2\n")


def test_quickstart_prints_exactly_the_same_lines_20_times(tmp_path: Path) -> None:
    program = tmp_path / "quickstart.py"
    program.write_text(QUICKSTART)
    for attempt in range(20):
        done = subprocess.run([sys.executable, str(program)], cwd=tmp_path,
                              capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr.decode()
        assert done.stdout == EXPECTED, f"run {attempt}: {done.stdout!r}"
        assert done.stderr == b""
