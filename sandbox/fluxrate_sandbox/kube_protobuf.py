"""Decoding of the Kubernetes protobuf wire format for the few built-in kinds kubectl sends that way.

kubectl's imperative commands (``kubectl create namespace|secret|configmap``) encode
request bodies as protobuf (``application/vnd.kubernetes.protobuf``) and do not fall
back to JSON.  This decodes the ``k8s\\0`` + ``runtime.Unknown`` envelope and the
fields of Namespace, Secret, ConfigMap and DeleteOptions into their JSON form.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Callable
from typing import Any

MAGIC = b"k8s\x00"


class ProtobufError(ValueError):
    pass


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def fields(data: bytes) -> list[tuple[int, int | bytes]]:
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((number, value))
        elif wire == 2:
            length, pos = _varint(data, pos)
            out.append((number, data[pos:pos + length]))
            pos += length
        elif wire == 1:
            out.append((number, int.from_bytes(data[pos:pos + 8], "little")))
            pos += 8
        elif wire == 5:
            out.append((number, int.from_bytes(data[pos:pos + 4], "little")))
            pos += 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
    return out


def _str(value: int | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _map_entry(value: int | bytes, decode_value: Callable[[bytes], Any]) -> tuple[str, Any]:
    key, val = "", decode_value(b"")
    for number, item in fields(value if isinstance(value, bytes) else b""):
        if number == 1:
            key = _str(item)
        elif number == 2 and isinstance(item, bytes):
            val = decode_value(item)
    return key, val


def _time(value: int | bytes) -> str:
    seconds = next((v for n, v in fields(value) if n == 1), 0) if isinstance(value, bytes) else 0
    return datetime.datetime.fromtimestamp(int(seconds), datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _owner_reference(value: bytes) -> dict[str, Any]:
    names = {5: "apiVersion", 1: "kind", 3: "name", 4: "uid"}
    ref: dict[str, Any] = {}
    for number, item in fields(value):
        if number in names:
            ref[names[number]] = _str(item)
        elif number == 6:
            ref["controller"] = bool(item)
        elif number == 7:
            ref["blockOwnerDeletion"] = bool(item)
    return ref


def object_meta(data: bytes) -> dict[str, Any]:
    strings = {1: "name", 2: "generateName", 3: "namespace", 5: "uid", 6: "resourceVersion"}
    meta: dict[str, Any] = {}
    for number, value in fields(data):
        if number in strings:
            meta[strings[number]] = _str(value)
        elif number == 11 or number == 12:
            key, val = _map_entry(value, lambda b: b.decode())
            meta.setdefault("labels" if number == 11 else "annotations", {})[key] = val
        elif number == 13 and isinstance(value, bytes):
            meta.setdefault("ownerReferences", []).append(_owner_reference(value))
        elif number == 14:
            meta.setdefault("finalizers", []).append(_str(value))
        elif number == 7:
            meta["generation"] = value
        elif number == 8:
            meta["creationTimestamp"] = _time(value)
    return meta


def _namespace(data: bytes) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for number, value in fields(data):
        if number == 1 and isinstance(value, bytes):
            obj["metadata"] = object_meta(value)
        elif number == 2 and isinstance(value, bytes):
            obj["spec"] = {"finalizers": [_str(v) for n, v in fields(value) if n == 1]}
    return obj


def _secret(data: bytes) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for number, value in fields(data):
        if number == 1 and isinstance(value, bytes):
            obj["metadata"] = object_meta(value)
        elif number == 2:
            key, raw = _map_entry(value, lambda b: b)
            obj.setdefault("data", {})[key] = base64.b64encode(raw).decode()
        elif number == 3:
            obj["type"] = _str(value)
        elif number == 4:
            key, text = _map_entry(value, lambda b: b.decode())
            obj.setdefault("stringData", {})[key] = text
        elif number == 5:
            obj["immutable"] = bool(value)
    return obj


def _configmap(data: bytes) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for number, value in fields(data):
        if number == 1 and isinstance(value, bytes):
            obj["metadata"] = object_meta(value)
        elif number == 2:
            key, text = _map_entry(value, lambda b: b.decode())
            obj.setdefault("data", {})[key] = text
        elif number == 3:
            key, raw = _map_entry(value, lambda b: b)
            obj.setdefault("binaryData", {})[key] = base64.b64encode(raw).decode()
        elif number == 4:
            obj["immutable"] = bool(value)
    return obj


def _delete_options(data: bytes) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for number, value in fields(data):
        if number == 1:
            obj["gracePeriodSeconds"] = value
        elif number == 2 and isinstance(value, bytes):
            names = {1: "uid", 2: "resourceVersion"}
            obj["preconditions"] = {names[n]: _str(v) for n, v in fields(value) if n in names}
        elif number == 3:
            obj["orphanDependents"] = bool(value)
        elif number == 4:
            obj["propagationPolicy"] = _str(value)
        elif number == 5:
            obj.setdefault("dryRun", []).append(_str(value))
    return obj


_DECODERS: dict[str, Callable[[bytes], dict[str, Any]]] = {
    "Namespace": _namespace, "Secret": _secret, "ConfigMap": _configmap, "DeleteOptions": _delete_options,
}


def decode(body: bytes) -> dict[str, Any]:
    if not body.startswith(MAGIC):
        raise ProtobufError("missing the k8s protobuf magic prefix")
    api_version = kind = ""
    raw = b""
    for number, value in fields(body[len(MAGIC):]):
        if number == 1 and isinstance(value, bytes):
            for sub, item in fields(value):
                if sub == 1:
                    api_version = _str(item)
                elif sub == 2:
                    kind = _str(item)
        elif number == 2 and isinstance(value, bytes):
            raw = value
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise ProtobufError(f"protobuf bodies of kind {kind!r} are not supported by the sandbox")
    return {"apiVersion": api_version, "kind": kind, **decoder(raw)}
