import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()

from config.uploads import use_own_upload_folder  # noqa: E402  (needs the settings)

use_own_upload_folder()
