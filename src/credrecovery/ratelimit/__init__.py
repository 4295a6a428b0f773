"""Rate limits: the limiters over ``limits`` storage, and the bounded memory store."""

from .limiters import AsyncLimiter, Limiter, LimitName, RateLimits

__all__ = ["AsyncLimiter", "LimitName", "Limiter", "RateLimits"]
