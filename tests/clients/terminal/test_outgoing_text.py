"""Files and embeds in the terminal: named and shown as text (it cannot show a file)."""

from __future__ import annotations

import io
import uuid

from carrier_cli.clients.terminal.piped import _write_extra
from carrier_cli.runtime.outgoing import Embed, EmbedField, OutgoingFile
from carrier_cli.runtime.types import TurnResult


def test_piped_output_names_files_and_prints_embeds_as_text() -> None:
    result = TurnResult(
        decision="RESPOND",
        message_id=uuid.uuid4(),
        text="Here it is.",
        files=[OutgoingFile("report.csv", b"a,b\n1,2\n", "text/csv")],
        embeds=[Embed(title="Launch", description="Friday", fields=(EmbedField("Pad", "39A"),))],
    )
    out = io.StringIO()
    _write_extra(out, result)
    assert out.getvalue() == "(sent file: report.csv, 8 bytes)\n**Launch**\nFriday\nPad: 39A\n"
