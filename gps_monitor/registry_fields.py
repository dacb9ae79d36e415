"""Field types of the registry (companies, vehicles, users): the validation the API, the admin
page and the bulk import share, so a value refused by one is refused by all with the same error.

Each is an ``Annotated`` pydantic type; a refused value is a pydantic validation error whose
``type`` (``string_too_short``, ``greater_than``, ``enum``, ``value_error``...) the admin page
turns into a message in its language.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from gps_monitor.db.registry import check_terminal_id

# Characters no registry text may hold: control and invisible format characters (zero-width
# space, BOM, the right-to-left override that shows a name reversed) and line or paragraph
# separators; such text is printed on evidence and sent to JT/T 809.
_INVISIBLE = r"\p{Cc}\p{Cf}\p{Zl}\p{Zp}"
_SHOWN = rf"[^\s{_INVISIBLE}]"  # a character that shows: not whitespace, not invisible
CompanyName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        # the plate's characters, and spaces between them: not blank, nothing around the name
        pattern=rf"^{_SHOWN}(?:[^{_INVISIBLE}]*{_SHOWN})?$",
        description="企业名称: 1 to 200 characters, no line breaks or invisible characters, "
        "no spaces before or after",
        examples=["渝运危货运输公司"],
    ),
]
# No whitespace (a trailing space or a line break pasted from a spreadsheet made a second
# vehicle of one plate, as the uniqueness is on the exact text), nor _INVISIBLE characters.
PlateNumber = Annotated[
    str,
    Field(
        min_length=2,
        max_length=20,
        pattern=rf"^{_SHOWN}+$",
        description="车牌号: 2 to 20 characters, no spaces, line breaks or invisible characters",
        examples=["渝A12345"],
    ),
]
TerminalId = Annotated[
    str,
    AfterValidator(check_terminal_id),
    Field(description="1 to 32 letters, digits, '-', '_' or '.'", examples=["013912345678"]),
]
SpeedLimitKmh = Annotated[
    float, Field(gt=0, le=300, description="the vehicle's own limit, km/h (none: class default)")
]
Username = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^\S+$")]
Password = Annotated[str, Field(min_length=8, max_length=200)]
DisplayName = Annotated[str, Field(max_length=100)]
