"""Every setting of the stack declared once (stackconf.declare), and what is generated from them."""

from stackconf.declare import (
    ApiTokenSettings,
    DataSettings,
    Declaration,
    MonitoringSettings,
    Renamed,
    SecretsSettings,
    Settings,
    declaration,
    setting,
)

__all__ = [
    "ApiTokenSettings",
    "DataSettings",
    "Declaration",
    "MonitoringSettings",
    "Renamed",
    "SecretsSettings",
    "Settings",
    "declaration",
    "setting",
]
