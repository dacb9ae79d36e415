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

CompanyName = Annotated[str, Field(min_length=1, max_length=200, examples=["渝运危货运输公司"])]
PlateNumber = Annotated[
    str,
    Field(min_length=2, max_length=20, description="车牌号", examples=["渝A12345"]),
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
