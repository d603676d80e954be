"""The leaf package: what every component needs. It imports nothing of stampline's, and
anything may import it (DESIGN.md, "Layout").
"""

from stampline._common._durations import (
    SECOND_NS,
    format_duration,
    parse_duration_ns,
    prometheus_duration,
)
from stampline._common._errors import StamplineError
from stampline._common._memory import use_system_memory_pool
from stampline._common._namespace import imported_as_part_of_stampline
from stampline._common._provider import UNNAMED_PROVIDER
from stampline._common._shown import (
    MASK,
    control_characters,
    is_secret_param,
    mask_urls,
    shown_value,
    url_credentials,
    visible,
)
from stampline._common._where import where
from stampline._common._yaml import (
    YamlDocument,
    YamlFileError,
    YamlLimitError,
    file_line,
    line_of,
    load_yaml,
    parse_yaml,
    read_yaml_file,
)

__all__ = [
    "MASK",
    "SECOND_NS",
    "UNNAMED_PROVIDER",
    "StamplineError",
    "YamlDocument",
    "YamlFileError",
    "YamlLimitError",
    "control_characters",
    "file_line",
    "format_duration",
    "imported_as_part_of_stampline",
    "is_secret_param",
    "line_of",
    "load_yaml",
    "mask_urls",
    "parse_duration_ns",
    "parse_yaml",
    "prometheus_duration",
    "read_yaml_file",
    "shown_value",
    "url_credentials",
    "use_system_memory_pool",
    "visible",
    "where",
]
