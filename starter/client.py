"""The one place that connects to Temporal, with the converter every party must share."""

import dataclasses

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.runtime import Runtime

from starter.codec import codec_from_keys
from starter.settings import Settings


def data_converter(settings: Settings) -> DataConverter:
    """Pydantic JSON, encrypted (payloads and failure messages) when keys are configured."""
    codec = codec_from_keys(settings.codec_keys.get_secret_value() if settings.codec_keys else None)
    if codec is None:
        return pydantic_data_converter
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


async def connect(settings: Settings | None = None, runtime: Runtime | None = None) -> Client:
    settings = settings or Settings()
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
        runtime=runtime,
    )
