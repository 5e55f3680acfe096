"""Settings of the Django/DRF demo project (same endpoints and policy as the FastAPI demo)."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "drfdemo.urls"
WSGI_APPLICATION = "drfdemo.wsgi.application"
ASGI_APPLICATION = "drfdemo.asgi.application"
USE_TZ = True

# ratewarden's app registers its system checks: manage.py check validates RATEWARDEN and the policy
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "rest_framework", "ratewarden.enforcer.django"]
MIDDLEWARE = ["ratewarden.enforcer.django.RatewardenMiddleware"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_THROTTLE_CLASSES": ["ratewarden.enforcer.django.throttling.RatewardenThrottle"],
    "DEFAULT_THROTTLE_RATES": {"user": "1000/hour", "anon": "100/hour", "uploads": "3/hour", "exact": "100/hour"},
    "UNAUTHENTICATED_USER": None,
}

# ratewarden's records (at RATEWARDEN_LOG_LEVEL, default info) and the others' warnings, as text or
# JSON lines on stderr like the other processes (RATEWARDEN_LOG_FORMAT=text|json); a 429 is no warning
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"ratewarden": {"()": "ratewarden.enforcer.logsetup.JsonFormatter"
                                  if os.environ.get("RATEWARDEN_LOG_FORMAT") == "json"
                                  else "ratewarden.enforcer.logsetup.TextFormatter"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "ratewarden"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
    "loggers": {"ratewarden": {"level": os.environ.get("RATEWARDEN_LOG_LEVEL", "info").upper()},
                "django.request": {"level": "ERROR"}},
}

# everything else comes from RATEWARDEN_* environment variables
RATEWARDEN = {"POLICY_FILE": os.environ.get("RATEWARDEN_POLICY_FILE", str(BASE_DIR.parent / "policy.yaml"))}

# For bench/drf.py: DRFDEMO_THROTTLE=none (no limits), drf (DRF's own UserRateThrottle on
# Django's Redis cache), user (ratewarden's UserRateThrottle), default: the policy throttle.
# DRFDEMO_USER_RATE sets the "user" rate; DRFDEMO_NUM_PROXIES trusts X-Forwarded-For like DRF does.
_throttle = os.environ.get("DRFDEMO_THROTTLE", "policy")
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["user"] = os.environ.get("DRFDEMO_USER_RATE", "1000/hour")
if os.environ.get("DRFDEMO_NUM_PROXIES"):
    REST_FRAMEWORK["NUM_PROXIES"] = int(os.environ["DRFDEMO_NUM_PROXIES"])
if _throttle == "none":
    REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"] = []
    MIDDLEWARE = []
elif _throttle == "drf":
    REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"] = ["rest_framework.throttling.UserRateThrottle"]
    MIDDLEWARE = []
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": os.environ.get("RATEWARDEN_REDIS_URL", "redis://127.0.0.1:6379/0")}}
elif _throttle == "user":
    REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"] = ["ratewarden.enforcer.django.throttling.UserRateThrottle"]
