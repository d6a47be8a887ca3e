"""The README's curl examples, run in order against the app with the seed data: all 2xx.

They are what a newcomer copies first; this keeps them true. The block between the
`api-examples` markers is parsed (curl's -s, -w, -X, -H, -d and the URL) and sent through the
real app. Every example ends its output with a newline (`-w '\\n'`), so the shell prompt is not
glued to the JSON.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

import httpx

from tests.support.paths import REPO_ROOT

README = REPO_ROOT / "README.md"


@dataclass
class Curl:
    method: str = "GET"
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    data: str | None = None
    write_out: str | None = None


def curl_commands() -> list[Curl]:
    text = README.read_text()
    block = text.split("<!-- api-examples:start -->")[1].split("<!-- api-examples:end -->")[0]
    lines = [line for line in block.replace("\\\n", " ").splitlines() if line.startswith("curl")]
    commands = []
    for line in lines:
        words, command = shlex.split(line)[1:], Curl()
        while words:
            word = words.pop(0)
            if word == "-s":
                continue
            if word == "-w":
                command.write_out = words.pop(0)
                continue
            if word == "-X":
                command.method = words.pop(0)
            elif word == "-H":
                name, value = words.pop(0).split(":", 1)
                command.headers[name.strip()] = value.strip()
            elif word == "-d":
                command.data = words.pop(0)
                command.method = "POST" if command.method == "GET" else command.method
            else:
                command.url = word.removeprefix("localhost:8080")
        commands.append(command)
    return commands


def test_the_readme_has_examples() -> None:
    assert len(curl_commands()) >= 10


def test_every_example_ends_its_output_with_a_newline() -> None:
    assert all(command.write_out == "\\n" for command in curl_commands())


async def test_readme_examples_succeed_in_order(client: httpx.AsyncClient) -> None:
    for command in curl_commands():
        response = await client.request(
            command.method, command.url, headers=command.headers, content=command.data
        )
        assert 200 <= response.status_code < 300, (command, response.text)
