"""Rate limits: the limiters over ``limits`` storage, and the bounded memory store."""

from .limiters import AsyncLimiter, Limiter, RateLimits

__all__ = ["AsyncLimiter", "Limiter", "RateLimits"]
