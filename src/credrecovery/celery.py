"""Compatibility path: the code lives in credrecovery.delivery.celery."""

import sys

from .delivery import celery as _module
from .delivery.celery import (
    TASK_NAME as TASK_NAME,
)
from .delivery.celery import (
    CeleryDelivery as CeleryDelivery,
)
from .delivery.celery import (
    Claim as Claim,
)
from .delivery.celery import (
    DeliveryRecords as DeliveryRecords,
)
from .delivery.celery import (
    RedisDeliveryRecords as RedisDeliveryRecords,
)

__all__ = ["TASK_NAME", "CeleryDelivery", "Claim", "DeliveryRecords", "RedisDeliveryRecords"]

# Private names, monkeypatching and isinstance then reach the one module.
sys.modules[__name__] = _module
