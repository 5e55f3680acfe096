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

INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "rest_framework"]
MIDDLEWARE = ["enforcer.django.RatewardenMiddleware"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_THROTTLE_CLASSES": ["enforcer.django.throttling.RatewardenThrottle"],
    "DEFAULT_THROTTLE_RATES": {"user": "1000/hour", "anon": "100/hour", "uploads": "3/hour", "exact": "100/hour"},
    "UNAUTHENTICATED_USER": None,
}

# everything else comes from RATEWARDEN_* environment variables
RATEWARDEN = {"POLICY_FILE": os.environ.get("RATEWARDEN_POLICY_FILE", str(BASE_DIR.parent / "policy.yaml"))}
