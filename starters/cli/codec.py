"""``fleet codec show``: where the codec endpoint listens and how to authenticate to it."""

from __future__ import annotations

from typing import Any

import typer

from agentfleet.settings import Settings
from starters.cli.output import JsonOpt, console, emit_json, fail
from starters.cli.settings_arg import load_settings

app = typer.Typer(
    help="The codec endpoint that decodes encrypted payloads for the Web UI and CLI.",
    no_args_is_help=True,
)


def describe(settings: Settings) -> dict[str, Any]:
    """The endpoint, the Web UI's form of it, the auth header and whether it answers now."""
    from agentfleet.codec import codec_token, ui_codec_endpoint
    from starters.stack.state import port_open

    token = codec_token(settings)
    return {
        "endpoint": settings.codec_url,
        "ui_endpoint": ui_codec_endpoint(settings),
        "authorization": f"Bearer {token}",
        "up": port_open(settings.codec_port),
        "accept_plaintext": settings.payload_accept_plaintext,
        "temporal_cli": (f"--codec-endpoint {settings.codec_url} --codec-auth 'Bearer {token}'"),
    }


@app.command("show")
def show(as_json: JsonOpt = False) -> None:
    """Print the codec endpoint and its token (a secret: it decrypts every payload).

    The Web UI of `fleet up` is given the endpoint with the token in its path; the temporal CLI
    and other clients send it as `Authorization: Bearer <token>`.
    """
    settings = load_settings(as_json)
    if settings.payload_key is None:
        fail(
            "no payload key is set (FLEET_PAYLOAD_KEY), so payloads are not encrypted and no "
            "codec endpoint runs",
            as_json=as_json,
        )
    data = describe(settings)
    if as_json:
        emit_json(data)
        return
    state = "[green]up[/]" if data["up"] else "[red]not running[/] (`fleet up` starts it)"
    for line in (
        f"endpoint      {data['endpoint']}  {state}",
        f"Web UI        {data['ui_endpoint']}",
        f"auth header   Authorization: {data['authorization']}",
        f"temporal CLI  temporal workflow show -w ID {data['temporal_cli']}",
    ):
        console.print(line, highlight=False, soft_wrap=True)
