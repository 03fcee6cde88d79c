"""The one place that connects to Temporal, with the converter every party must share."""

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from starter.settings import Settings


async def connect(settings: Settings | None = None) -> Client:
    settings = settings or Settings()
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
    )
