"""The one place that connects to Temporal, with the converter every party must share."""

import asyncio
import dataclasses
import functools
import subprocess
import time
from typing import Any

from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.contrib.pydantic import PydanticPayloadConverter, pydantic_data_converter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    EncodingPayloadConverter,
)
from temporalio.runtime import Runtime

from starter.codec import EncryptionCodec, TolerantDecoding, codec_from_keys
from starter.settings import Settings
from workflows.payloads import UNDECRYPTABLE_ENCODING, Undecryptable


class UndecryptablePayloadConverter(EncodingPayloadConverter):
    """Reads the worker codec's marker for a payload it could not decrypt."""

    @property
    def encoding(self) -> str:
        return UNDECRYPTABLE_ENCODING

    def to_payload(self, value: Any) -> Payload | None:
        return None  # never written: only the worker's codec makes these

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        return Undecryptable(payload.data.decode(errors="replace")[:200])


class ReferralPayloadConverter(PydanticPayloadConverter):
    """Pydantic JSON, and the worker codec's marker for what it could not decrypt.

    The SDK builds a data converter, and so one of these, twice for every workflow task
    (to encode and decode its payloads, which it never converts with it): outside the
    sandbox they share one set of converters, built once, with one cache of pydantic type
    adapters. Each workflow run builds its own inside its sandbox, as the SDK's does."""

    def __init__(self) -> None:
        if workflow.unsafe.in_sandbox():
            super().__init__()
            self._set_converters(*self.converters.values(), UndecryptablePayloadConverter())
        else:
            CompositePayloadConverter.__init__(self, *_shared_converters())


@functools.cache
def _shared_converters() -> tuple[EncodingPayloadConverter, ...]:
    return (*PydanticPayloadConverter().converters.values(), UndecryptablePayloadConverter())


def data_converter(settings: Settings) -> DataConverter:
    """Pydantic JSON, encrypted (payloads and failure messages) when keys are configured."""
    codec = codec_from_keys(settings.codec_keys.get_secret_value() if settings.codec_keys else None)
    converter = dataclasses.replace(
        pydantic_data_converter, payload_converter_class=ReferralPayloadConverter
    )
    if codec is None:
        return converter
    return dataclasses.replace(
        converter,
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def worker_client(client: Client) -> Client:
    """The client a worker runs on: what its codec cannot decrypt is handed on for the
    workflow to refuse, instead of failing the workflow task (and freezing the referral)."""
    converter = dataclasses.replace(
        client.data_converter, payload_converter_class=ReferralPayloadConverter
    )
    if isinstance(converter.payload_codec, EncryptionCodec):
        converter = dataclasses.replace(
            converter, payload_codec=TolerantDecoding(converter.payload_codec)
        )
    config = client.config()
    config["data_converter"] = converter
    return Client(**config)


async def connect(
    settings: Settings | None = None,
    *,
    runtime: Runtime | None = None,
    retry_for: float = 0,
    server: "subprocess.Popen[bytes] | None" = None,
) -> Client:
    """A client for ``settings`` (the environment's by default). With ``retry_for``, keep
    trying that many seconds while a server starts, giving up early if ``server`` exits;
    the last failure is raised as it came (a RuntimeError)."""
    settings = settings or Settings()
    converter = data_converter(settings)
    deadline = time.monotonic() + retry_for
    while True:
        try:
            return await Client.connect(
                settings.temporal_address,
                namespace=settings.temporal_namespace,
                data_converter=converter,
                runtime=runtime,
            )
        except RuntimeError:
            if server is not None and server.poll() is not None:
                raise RuntimeError(
                    f"the Temporal server exited ({server.returncode}) before "
                    f"{settings.temporal_address} answered"
                ) from None
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.25)
