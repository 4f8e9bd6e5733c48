# mypy: ignore-errors
from . import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CloneInfo(_message.Message):
    __slots__ = ("context_data", "created_thread_id", "created_thread_group_id", "created_thread_start_time_ns", "flags")
    CONTEXT_DATA_FIELD_NUMBER: _ClassVar[int]
    CREATED_THREAD_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_THREAD_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_THREAD_START_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    context_data: _common_pb2.ContextData
    created_thread_id: int
    created_thread_group_id: int
    created_thread_start_time_ns: int
    flags: int
    def __init__(self, context_data: _Optional[_Union[_common_pb2.ContextData, _Mapping]] = ..., created_thread_id: _Optional[int] = ..., created_thread_group_id: _Optional[int] = ..., created_thread_start_time_ns: _Optional[int] = ..., flags: _Optional[int] = ...) -> None: ...

class ExecveInfo(_message.Message):
    __slots__ = ("context_data", "binary_path", "argv", "env", "binary_mode", "binary_uid", "binary_gid", "binary_sha256")
    CONTEXT_DATA_FIELD_NUMBER: _ClassVar[int]
    BINARY_PATH_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    BINARY_MODE_FIELD_NUMBER: _ClassVar[int]
    BINARY_UID_FIELD_NUMBER: _ClassVar[int]
    BINARY_GID_FIELD_NUMBER: _ClassVar[int]
    BINARY_SHA256_FIELD_NUMBER: _ClassVar[int]
    context_data: _common_pb2.ContextData
    binary_path: str
    argv: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.RepeatedScalarFieldContainer[str]
    binary_mode: int
    binary_uid: int
    binary_gid: int
    binary_sha256: bytes
    def __init__(self, context_data: _Optional[_Union[_common_pb2.ContextData, _Mapping]] = ..., binary_path: _Optional[str] = ..., argv: _Optional[_Iterable[str]] = ..., env: _Optional[_Iterable[str]] = ..., binary_mode: _Optional[int] = ..., binary_uid: _Optional[int] = ..., binary_gid: _Optional[int] = ..., binary_sha256: _Optional[bytes] = ...) -> None: ...

class ExitNotifyParentInfo(_message.Message):
    __slots__ = ("context_data", "exit_status")
    CONTEXT_DATA_FIELD_NUMBER: _ClassVar[int]
    EXIT_STATUS_FIELD_NUMBER: _ClassVar[int]
    context_data: _common_pb2.ContextData
    exit_status: int
    def __init__(self, context_data: _Optional[_Union[_common_pb2.ContextData, _Mapping]] = ..., exit_status: _Optional[int] = ...) -> None: ...

class TaskExit(_message.Message):
    __slots__ = ("context_data", "exit_status")
    CONTEXT_DATA_FIELD_NUMBER: _ClassVar[int]
    EXIT_STATUS_FIELD_NUMBER: _ClassVar[int]
    context_data: _common_pb2.ContextData
    exit_status: int
    def __init__(self, context_data: _Optional[_Union[_common_pb2.ContextData, _Mapping]] = ..., exit_status: _Optional[int] = ...) -> None: ...
