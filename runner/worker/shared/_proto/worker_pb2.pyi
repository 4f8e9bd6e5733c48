from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthReply(_message.Message):
    __slots__ = ("status", "worker_version", "python_version", "uid", "pid")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    WORKER_VERSION_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    status: str
    worker_version: str
    python_version: str
    uid: int
    pid: int
    def __init__(self, status: _Optional[str] = ..., worker_version: _Optional[str] = ..., python_version: _Optional[str] = ..., uid: _Optional[int] = ..., pid: _Optional[int] = ...) -> None: ...

class PrepareRequest(_message.Message):
    __slots__ = ("model_path", "format")
    MODEL_PATH_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    model_path: str
    format: str
    def __init__(self, model_path: _Optional[str] = ..., format: _Optional[str] = ...) -> None: ...

class PrepareReply(_message.Message):
    __slots__ = ("seconds",)
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    seconds: float
    def __init__(self, seconds: _Optional[float] = ...) -> None: ...

class LoadRequest(_message.Message):
    __slots__ = ("model_path", "format", "architecture_path", "trust_remote_code", "state_key", "non_strict", "base_path")
    MODEL_PATH_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_PATH_FIELD_NUMBER: _ClassVar[int]
    TRUST_REMOTE_CODE_FIELD_NUMBER: _ClassVar[int]
    STATE_KEY_FIELD_NUMBER: _ClassVar[int]
    NON_STRICT_FIELD_NUMBER: _ClassVar[int]
    BASE_PATH_FIELD_NUMBER: _ClassVar[int]
    model_path: str
    format: str
    architecture_path: str
    trust_remote_code: bool
    state_key: str
    non_strict: bool
    base_path: str
    def __init__(self, model_path: _Optional[str] = ..., format: _Optional[str] = ..., architecture_path: _Optional[str] = ..., trust_remote_code: _Optional[bool] = ..., state_key: _Optional[str] = ..., non_strict: _Optional[bool] = ..., base_path: _Optional[str] = ...) -> None: ...

class LoadReply(_message.Message):
    __slots__ = ("format", "can_infer", "note", "load_seconds")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    CAN_INFER_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    LOAD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    format: str
    can_infer: bool
    note: str
    load_seconds: float
    def __init__(self, format: _Optional[str] = ..., can_infer: _Optional[bool] = ..., note: _Optional[str] = ..., load_seconds: _Optional[float] = ...) -> None: ...

class DescribeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TensorSpec(_message.Message):
    __slots__ = ("name", "dtype", "shape")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ...) -> None: ...

class DescribeReply(_message.Message):
    __slots__ = ("format", "inputs", "outputs", "can_infer", "note")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    CAN_INFER_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    format: str
    inputs: _containers.RepeatedCompositeFieldContainer[TensorSpec]
    outputs: _containers.RepeatedCompositeFieldContainer[TensorSpec]
    can_infer: bool
    note: str
    def __init__(self, format: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[TensorSpec, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[TensorSpec, _Mapping]]] = ..., can_infer: _Optional[bool] = ..., note: _Optional[str] = ...) -> None: ...

class Tensor(_message.Message):
    __slots__ = ("name", "dtype", "shape", "data", "in_shm", "shm_offset", "shm_length")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    IN_SHM_FIELD_NUMBER: _ClassVar[int]
    SHM_OFFSET_FIELD_NUMBER: _ClassVar[int]
    SHM_LENGTH_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    in_shm: bool
    shm_offset: int
    shm_length: int
    def __init__(self, name: _Optional[str] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ..., in_shm: _Optional[bool] = ..., shm_offset: _Optional[int] = ..., shm_length: _Optional[int] = ...) -> None: ...

class InferRequest(_message.Message):
    __slots__ = ("inputs", "output_offset", "output_length")
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_LENGTH_FIELD_NUMBER: _ClassVar[int]
    inputs: _containers.RepeatedCompositeFieldContainer[Tensor]
    output_offset: int
    output_length: int
    def __init__(self, inputs: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., output_offset: _Optional[int] = ..., output_length: _Optional[int] = ...) -> None: ...

class InferReply(_message.Message):
    __slots__ = ("outputs", "infer_seconds")
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    INFER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    outputs: _containers.RepeatedCompositeFieldContainer[Tensor]
    infer_seconds: float
    def __init__(self, outputs: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., infer_seconds: _Optional[float] = ...) -> None: ...

class TextRequest(_message.Message):
    __slots__ = ("texts", "max_new_tokens", "max_seconds")
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_SECONDS_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    max_new_tokens: int
    max_seconds: float
    def __init__(self, texts: _Optional[_Iterable[str]] = ..., max_new_tokens: _Optional[int] = ..., max_seconds: _Optional[float] = ...) -> None: ...

class Label(_message.Message):
    __slots__ = ("label", "score")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    label: str
    score: float
    def __init__(self, label: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class TextReply(_message.Message):
    __slots__ = ("task", "outputs", "labels", "generated", "tokens", "infer_seconds")
    TASK_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    GENERATED_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    INFER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    task: str
    outputs: _containers.RepeatedCompositeFieldContainer[Tensor]
    labels: _containers.RepeatedCompositeFieldContainer[Label]
    generated: _containers.RepeatedScalarFieldContainer[str]
    tokens: int
    infer_seconds: float
    def __init__(self, task: _Optional[str] = ..., outputs: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., labels: _Optional[_Iterable[_Union[Label, _Mapping]]] = ..., generated: _Optional[_Iterable[str]] = ..., tokens: _Optional[int] = ..., infer_seconds: _Optional[float] = ...) -> None: ...

class ShutdownRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ShutdownReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
