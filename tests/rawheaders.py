"""A producer of header names no Python client can send: raw bytes, not UTF-8.

Kafka's record format carries a header's name as bytes, and a producer in C or a raw client
can put anything there; confluent-kafka and the rdkafka crate take names as ``str``. This calls
librdkafka's ``rd_kafka_produceva`` (the copy confluent-kafka's wheel bundles) through ctypes,
so the tests can send such a record to the real broker.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import confluent_kafka

_LIBS = Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs"
_lib = ctypes.CDLL(str(next(_LIBS.glob("librdkafka-*.so*"))))

# rd_kafka_vtype_t
_TOPIC, _PARTITION, _VALUE, _MSGFLAGS, _HEADERS = 1, 3, 4, 7, 10
_MSG_F_COPY = 0x2


class _Mem(ctypes.Structure):
    _fields_ = [("ptr", ctypes.c_void_p), ("size", ctypes.c_size_t)]


class _U(ctypes.Union):
    _fields_ = [
        ("cstr", ctypes.c_char_p),
        ("i32", ctypes.c_int32),
        ("mem", _Mem),
        ("ptr", ctypes.c_void_p),
        ("_pad", ctypes.c_char * 64),
    ]


class _VU(ctypes.Structure):  # rd_kafka_vu_t
    _fields_ = [("vtype", ctypes.c_int), ("u", _U)]


_lib.rd_kafka_conf_new.restype = ctypes.c_void_p
_lib.rd_kafka_conf_set.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p,
                                   ctypes.c_char_p, ctypes.c_size_t]  # fmt: skip
_lib.rd_kafka_new.restype = ctypes.c_void_p
_lib.rd_kafka_new.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
_lib.rd_kafka_headers_new.restype = ctypes.c_void_p
_lib.rd_kafka_headers_new.argtypes = [ctypes.c_size_t]
_lib.rd_kafka_header_add.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_ssize_t,
                                     ctypes.c_char_p, ctypes.c_ssize_t]  # fmt: skip
_lib.rd_kafka_produceva.restype = ctypes.c_void_p
_lib.rd_kafka_produceva.argtypes = [ctypes.c_void_p, ctypes.POINTER(_VU), ctypes.c_size_t]
_lib.rd_kafka_flush.argtypes = [ctypes.c_void_p, ctypes.c_int]
_lib.rd_kafka_destroy.argtypes = [ctypes.c_void_p]


def produce_raw_headers(
    bootstrap: str, topic: str, partition: int, value: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    """Produce one record with ``headers`` whose names are taken as raw bytes."""
    err = ctypes.create_string_buffer(512)
    conf = _lib.rd_kafka_conf_new()
    if _lib.rd_kafka_conf_set(conf, b"bootstrap.servers", bootstrap.encode(), err, 512) != 0:
        raise RuntimeError(err.value.decode())
    producer = _lib.rd_kafka_new(0, conf, err, 512)  # RD_KAFKA_PRODUCER
    if not producer:
        raise RuntimeError(err.value.decode())
    try:
        hdrs = _lib.rd_kafka_headers_new(len(headers))
        for name, val in headers:
            if _lib.rd_kafka_header_add(hdrs, name, len(name), val, len(val)) != 0:
                raise RuntimeError("header not added")
        buf = ctypes.create_string_buffer(value, len(value))
        vus = (_VU * 5)()
        vus[0].vtype, vus[0].u.cstr = _TOPIC, topic.encode()
        vus[1].vtype, vus[1].u.i32 = _PARTITION, partition
        vus[2].vtype, vus[2].u.mem = _VALUE, _Mem(ctypes.cast(buf, ctypes.c_void_p), len(value))
        vus[3].vtype, vus[3].u.i32 = _MSGFLAGS, _MSG_F_COPY
        vus[4].vtype, vus[4].u.ptr = _HEADERS, hdrs  # librdkafka owns them once produced
        if _lib.rd_kafka_produceva(producer, vus, 5):
            raise RuntimeError("rd_kafka_produceva refused the record")
        if _lib.rd_kafka_flush(producer, 10_000) != 0:
            raise RuntimeError("the record was not delivered in 10 s")
    finally:
        _lib.rd_kafka_destroy(producer)
