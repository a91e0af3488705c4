"""One Instagram account per character: `instagram:NAME` keys and clients.instagram.account_id.

The fake Graph API holds two accounts, each opened only by its own token, so a post that
went out with the wrong token or to the wrong account id fails there as it would on Meta.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carrier_cli.character import load_character
from carrier_cli.clients.instagram import accounts
from carrier_cli.clients.instagram.options import GraphOptions
from carrier_cli.errors import ConfigError
from carrier_cli.secrets import SecretStore
from tests.clients.instagram.cli_helpers import carrier, run_cli
from tests.clients.instagram.helpers import make_image
from tests.support.instagram_servers import InstagramEnv

MARINA_ID = "17841400000000002"
MARINA_TOKEN = "IGAAmarinatoken0123456789abcdefXYZ"


def write_character(path: Path, *, key: str | None, account_id: str | None) -> Path:
    lines = ["name: Marina", "bio: [A sailor.]", "clients:", "  instagram:"]
    if key:
        lines.append(f"    account_key: {key}")
    if account_id:
        lines.append(f'    account_id: "{account_id}"')
    if not key and not account_id:
        lines.append("    enabled: true")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def global_graph() -> GraphOptions:
    return GraphOptions(
        account_id="1",
        access_token="global-token",
        api_host="graph.facebook.com",
        api_version="v25.0",
        api_base=None,
        max_retries=0,
        retry_delay=0.0,
        poll_interval=0.0,
        poll_timeout=1.0,
    )


def test_a_character_without_a_key_uses_the_global_account(tmp_path: Path) -> None:
    character = load_character(write_character(tmp_path / "m.yaml", key=None, account_id=None))
    graph = global_graph()
    assert accounts.character_graph(graph, character) is graph
    assert accounts.journal_entry(graph) is None


def test_the_characters_key_and_id(tmp_path: Path) -> None:
    SecretStore().set("instagram:marina", MARINA_TOKEN)
    path = write_character(tmp_path / "m.yaml", key="instagram:marina", account_id=MARINA_ID)
    graph = accounts.character_graph(global_graph(), load_character(path))
    assert (graph.account_id, graph.access_token, graph.account_key) == (
        MARINA_ID,
        MARINA_TOKEN,
        "instagram:marina",
    )
    entry = accounts.journal_entry(graph)
    assert entry == {"key": "instagram:marina", "id": MARINA_ID}  # never the token
    # A journaled post continues as its own account whatever the current options are.
    again = accounts.graph_for_record(global_graph(), entry)
    assert again.account_id == MARINA_ID and again.access_token == MARINA_TOKEN


@pytest.mark.parametrize(
    ("key", "account_id", "message"),
    [
        ("instagram:marina", None, "no clients.instagram.account_id"),
        ("instagram:nobody", MARINA_ID, "no key of that name is stored"),
        ("discord:marina", MARINA_ID, "is not an Instagram key name"),
    ],
)
def test_refusals_name_the_field_or_the_key(
    tmp_path: Path, key: str, account_id: str | None, message: str
) -> None:
    SecretStore().set("instagram:marina", MARINA_TOKEN)
    path = write_character(tmp_path / "m.yaml", key=key, account_id=account_id)
    with pytest.raises(ConfigError, match=message) as info:
        accounts.character_graph(global_graph(), load_character(path))
    assert MARINA_TOKEN not in str(info.value)


def test_account_id_must_be_numeric(tmp_path: Path) -> None:
    from carrier_cli.errors import InputError

    path = write_character(tmp_path / "m.yaml", key="instagram:marina", account_id="marina")
    with pytest.raises(InputError, match="account_id"):
        load_character(path)


@pytest.mark.service
@pytest.mark.slow
def test_post_as_the_characters_account_then_resume_as_it(
    instagram_env: InstagramEnv, tmp_path: Path
) -> None:
    graph = instagram_env.graph
    graph.add_account(MARINA_ID, MARINA_TOKEN, "marina.sails")
    SecretStore().set("instagram:marina", MARINA_TOKEN)
    write_character(tmp_path / "marina.yaml", key="instagram:marina", account_id=MARINA_ID)
    make_image(tmp_path / "p.jpg", (1080, 1080))

    who = run_cli("instagram", "whoami", "--character", "marina.yaml", cwd=tmp_path)
    assert who.returncode == 0, who.stderr
    assert "@marina.sails" in who.stdout and "instagram:marina" in who.stdout

    args = ["instagram", "post", "p.jpg", "--caption", "mine", "--character", "marina.yaml"]
    crashed = carrier(*args, cwd=tmp_path, extra_env={"CARRIER_TEST_CRASH_AFTER": "uploaded"})
    assert crashed.returncode == 137, crashed.stderr
    row = json.loads(run_cli("instagram", "history", "--json", cwd=tmp_path).stdout)[0]
    assert row["options"]["account"] == {"key": "instagram:marina", "id": MARINA_ID}
    # Resumed without --character: the journal says whose post it is.
    resumed = run_cli("instagram", "resume", str(row["id"]), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert [m["account"] for m in graph.published] == [MARINA_ID]
    # The same photo and caption on the global account is another post, not "already".
    plain = run_cli("instagram", "post", "p.jpg", "--caption", "mine", cwd=tmp_path)
    assert plain.returncode == 0 and "Already" not in plain.stdout, plain.stderr
    assert [m["account"] for m in graph.published] == [MARINA_ID, graph.account_id]
    assert MARINA_TOKEN not in crashed.stderr + resumed.stderr + resumed.stdout
