"""JT/T 808 terminal parameters (终端参数): the ids we know, their names with units, their wire
types, and which of them the platform lets a user set, with the accepted range.

Source: JT/T 808-2013 section 8.8 table 12 (终端参数项定义及说明; 2019 keeps these ids). A
parameter item on the wire is id u32, length u8, value (DWORD u32, WORD u16, BYTE u8, or a
STRING in GBK). Units are converted here, once: 0x005B is sent in 1/10 km/h and 0x0080 in
1/10 km; every other value is in the unit its name carries.

Settable (``PARAMETERS[...].settable``): the reporting strategy and intervals (0x0020-0x002F),
heartbeat and TCP answer settings, overspeed limit and duration (0x0055, 0x0056), fatigue
thresholds (0x0057-0x005A) and the warning differences (0x005B, 0x005C). Not settable from the
page, though decoded when a terminal reports them: server addresses, APNs, ports and phone numbers
(a wrong value there disconnects the terminal from every platform, and the 两客一危 terminal is
configured by its installer), odometer, plate and the alarm masks. The ranges are the platform's
choice where the standard gives none (it only types the fields as DWORD); each range is written
beside its parameter and checked before anything is sent (:func:`check_settings`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from gps_monitor.errors import GpsMonitorError


class WireType(StrEnum):
    DWORD = "dword"  # u32
    WORD = "word"  # u16
    BYTE = "byte"  # u8
    STRING = "string"  # GBK text, any length up to 255


WIRE_BYTES = {WireType.DWORD: 4, WireType.WORD: 2, WireType.BYTE: 1}


@dataclass(frozen=True, slots=True)
class Parameter:
    """One known terminal parameter.

    Attributes:
        param_id: the JT/T 808 id (0x0055...).
        name: our name, unit in the name (``overspeed_limit_kmh``).
        wire: how the value is sent.
        scale: wire units per our unit (10 for 1/10 km/h -> km/h), 1 for none.
        settable: whether the platform lets a user set it, then ``minimum`` .. ``maximum``
            (in our unit) are the accepted values.
        zh: the Chinese name the page shows.
    """

    param_id: int
    name: str
    wire: WireType
    zh: str
    scale: int = 1
    settable: bool = False
    minimum: float = 0
    maximum: float = 0

    @property
    def id_hex(self) -> str:
        return f"0x{self.param_id:04x}"


_D, _W, _B, _S = WireType.DWORD, WireType.WORD, WireType.BYTE, WireType.STRING
DAY_S = 86400

PARAMETERS: tuple[Parameter, ...] = (
    Parameter(0x0001, "heartbeat_interval_s", _D, "终端心跳发送间隔(秒)", settable=True,
              minimum=1, maximum=3600),
    Parameter(0x0002, "tcp_reply_timeout_s", _D, "TCP消息应答超时时间(秒)", settable=True,
              minimum=1, maximum=600),
    Parameter(0x0003, "tcp_retransmissions", _D, "TCP消息重传次数", settable=True,
              minimum=0, maximum=10),
    Parameter(0x0004, "udp_reply_timeout_s", _D, "UDP消息应答超时时间(秒)"),
    Parameter(0x0005, "udp_retransmissions", _D, "UDP消息重传次数"),
    Parameter(0x0006, "sms_reply_timeout_s", _D, "SMS消息应答超时时间(秒)"),
    Parameter(0x0007, "sms_retransmissions", _D, "SMS消息重传次数"),
    Parameter(0x0010, "main_server_apn", _S, "主服务器APN"),
    Parameter(0x0011, "main_server_user", _S, "主服务器无线通信拨号用户名"),
    Parameter(0x0012, "main_server_password", _S, "主服务器无线通信拨号密码"),
    Parameter(0x0013, "main_server_address", _S, "主服务器地址(IP或域名)"),
    Parameter(0x0014, "backup_server_apn", _S, "备份服务器APN"),
    Parameter(0x0015, "backup_server_user", _S, "备份服务器无线通信拨号用户名"),
    Parameter(0x0016, "backup_server_password", _S, "备份服务器无线通信拨号密码"),
    Parameter(0x0017, "backup_server_address", _S, "备份服务器地址(IP或域名)"),
    Parameter(0x0018, "server_tcp_port", _D, "服务器TCP端口"),
    Parameter(0x0019, "server_udp_port", _D, "服务器UDP端口"),
    # 0 timed, 1 by distance, 2 timed and by distance
    Parameter(0x0020, "report_strategy", _D, "位置汇报策略(0定时 1定距 2定时和定距)",
              settable=True, minimum=0, maximum=2),
    # 0 by ACC state, 1 by login state and then ACC state
    Parameter(0x0021, "report_scheme", _D, "位置汇报方案(0根据ACC 1根据登录状态和ACC)",
              settable=True, minimum=0, maximum=1),
    Parameter(0x0022, "report_interval_no_driver_s", _D, "驾驶员未登录汇报时间间隔(秒)",
              settable=True, minimum=1, maximum=DAY_S),
    Parameter(0x0027, "report_interval_sleep_s", _D, "休眠时汇报时间间隔(秒)", settable=True,
              minimum=1, maximum=DAY_S),
    Parameter(0x0028, "report_interval_emergency_s", _D, "紧急报警时汇报时间间隔(秒)",
              settable=True, minimum=1, maximum=DAY_S),
    Parameter(0x0029, "report_interval_default_s", _D, "缺省时间汇报间隔(秒)", settable=True,
              minimum=1, maximum=DAY_S),
    Parameter(0x002C, "report_distance_default_m", _D, "缺省距离汇报间隔(米)", settable=True,
              minimum=1, maximum=100_000),
    Parameter(0x002D, "report_distance_no_driver_m", _D, "驾驶员未登录汇报距离间隔(米)",
              settable=True, minimum=1, maximum=100_000),
    Parameter(0x002E, "report_distance_sleep_m", _D, "休眠时汇报距离间隔(米)", settable=True,
              minimum=1, maximum=100_000),
    Parameter(0x002F, "report_distance_emergency_m", _D, "紧急报警时汇报距离间隔(米)",
              settable=True, minimum=1, maximum=100_000),
    Parameter(0x0030, "turn_angle_deg", _D, "拐点补传角度(度)", settable=True,
              minimum=1, maximum=179),
    Parameter(0x0031, "fence_radius_m", _W, "电子围栏半径(非法位移阈值,米)"),
    Parameter(0x0040, "platform_phone", _S, "监控平台电话号码"),
    Parameter(0x0050, "alarm_mask", _D, "报警屏蔽字"),
    Parameter(0x0051, "alarm_sms_switch", _D, "报警发送文本SMS开关"),
    Parameter(0x0052, "alarm_photo_switch", _D, "报警拍摄开关"),
    Parameter(0x0053, "alarm_photo_store_flags", _D, "报警拍摄存储标志"),
    Parameter(0x0054, "key_alarm_flags", _D, "关键标志"),
    # DOMAIN.md: 0x0055 max speed (km/h) and 0x0056 overspeed duration (s) mirror our settings
    Parameter(0x0055, "overspeed_limit_kmh", _D, "最高速度(公里每小时)", settable=True,
              minimum=1, maximum=200),
    Parameter(0x0056, "overspeed_duration_s", _D, "超速持续时间(秒)", settable=True,
              minimum=0, maximum=3600),
    # fatigue thresholds (交通运输部令2016年第1号: 4 h continuous, 20 min rest)
    Parameter(0x0057, "continuous_driving_limit_s", _D, "连续驾驶时间门限(秒)", settable=True,
              minimum=60, maximum=DAY_S),
    Parameter(0x0058, "daily_driving_limit_s", _D, "当天累计驾驶时间门限(秒)", settable=True,
              minimum=60, maximum=DAY_S),
    Parameter(0x0059, "min_rest_s", _D, "最小休息时间(秒)", settable=True,
              minimum=0, maximum=DAY_S),
    Parameter(0x005A, "max_parking_s", _D, "最长停车时间(秒)", settable=True,
              minimum=0, maximum=7 * DAY_S),
    Parameter(0x005B, "overspeed_warning_diff_kmh", _W, "超速报警预警差值(公里每小时)",
              scale=10, settable=True, minimum=0, maximum=50),
    Parameter(0x005C, "fatigue_warning_diff_s", _W, "疲劳驾驶预警差值(秒)", settable=True,
              minimum=0, maximum=14_400),
    Parameter(0x005D, "collision_alarm_params", _W, "碰撞报警参数"),
    Parameter(0x005E, "rollover_angle_deg", _W, "侧翻报警角度(度)"),
    Parameter(0x0064, "timed_photo_control", _D, "定时拍照控制"),
    Parameter(0x0065, "distance_photo_control", _D, "定距拍照控制"),
    Parameter(0x0070, "image_quality", _D, "图像/视频质量(1-10)"),
    Parameter(0x0080, "odometer_km", _D, "车辆里程表读数(公里)", scale=10),
    Parameter(0x0081, "province_id", _W, "车辆所在的省域ID"),
    Parameter(0x0082, "city_id", _W, "车辆所在的市域ID"),
    Parameter(0x0083, "plate_number", _S, "机动车号牌"),
    Parameter(0x0084, "plate_color", _B, "车牌颜色"),
    Parameter(0x0090, "gnss_mode", _B, "GNSS定位模式"),
    Parameter(0x0091, "gnss_baud_rate", _B, "GNSS波特率"),
    Parameter(0x0092, "gnss_output_rate", _B, "GNSS模块详细定位数据输出频率"),
    Parameter(0x0093, "gnss_sampling_s", _D, "GNSS模块详细定位数据采集频率(秒)"),
    Parameter(0x0100, "can1_collect_interval_ms", _D, "CAN总线通道1采集时间间隔(毫秒)"),
    Parameter(0x0101, "can1_upload_interval_s", _W, "CAN总线通道1上传时间间隔(秒)"),
    Parameter(0x0102, "can2_collect_interval_ms", _D, "CAN总线通道2采集时间间隔(毫秒)"),
    Parameter(0x0103, "can2_upload_interval_s", _W, "CAN总线通道2上传时间间隔(秒)"),
)  # fmt: skip

BY_ID: dict[int, Parameter] = {p.param_id: p for p in PARAMETERS}
BY_NAME: dict[str, Parameter] = {p.name: p for p in PARAMETERS}


class ParameterError(GpsMonitorError):
    """A parameter value the platform will not send; ``field`` names it (``params.<name>``)."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


def check_settings(values: dict[str, Any]) -> dict[str, float | int]:
    """Validate the values a user wants to set, by name (``{"overspeed_limit_kmh": 80}``).

    Returns the same mapping with numbers (whole numbers as int; 0x005B may carry one decimal).

    Raises:
        ParameterError: empty, an unknown or not settable name, a value that is not a number,
            not a whole number (or, for 0x005B, not a multiple of 0.1) or outside the range;
            the message names the parameter, its id, the range and the value.
    """
    if not values:
        raise ParameterError("params", "expected at least one parameter to set, got none")
    out: dict[str, float | int] = {}
    for name, value in values.items():
        field = f"params.{name}"
        parameter = BY_NAME.get(name)
        if parameter is None or not parameter.settable:
            settable = ", ".join(p.name for p in PARAMETERS if p.settable)
            what = "a parameter that cannot be set here" if parameter else "an unknown name"
            raise ParameterError(field, f"expected one of {settable}; got {what}")
        where = f"{parameter.id_hex} {parameter.name}"
        bounds = f"{parameter.minimum:g} to {parameter.maximum:g}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParameterError(field, f"{where}: expected a number {bounds}, got {value!r}")
        wire = value * parameter.scale
        if abs(wire - round(wire)) > 1e-6:
            step = (
                "a whole number"
                if parameter.scale == 1
                else f"a multiple of {1 / parameter.scale:g}"
            )
            raise ParameterError(field, f"{where}: expected {step} {bounds}, got {value!r}")
        if not parameter.minimum <= value <= parameter.maximum:
            raise ParameterError(field, f"{where}: expected {bounds}, got {value:g}")
        out[name] = round(value) if parameter.scale == 1 else round(value, 1)
    return out


def names_to_ids(names: list[str]) -> list[int]:
    """Parameter ids of known ``names`` (for 0x8106).

    Raises:
        ParameterError: an unknown name.
    """
    ids = []
    for name in names:
        parameter = BY_NAME.get(name)
        if parameter is None:
            raise ParameterError(
                "names", f"expected known parameter names (e.g. overspeed_limit_kmh), got {name!r}"
            )
        ids.append(parameter.param_id)
    return ids
