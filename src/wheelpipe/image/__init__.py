"""A service's runtime image, from the wheelhouse: `invoke image`, `invoke verify-image`, `--push`.

- record.py: the settings of a run, and each service's image record, resolved once;
- context.py: the build context, the only files a build sees;
- recipe.py: which Dockerfile, what it may do, where the legacy builder cuts it;
- build.py: the offline build, verified before it is tagged;
- verify.py: an image's venv against its install manifest, file for file;
- push.py: the registry a tag names, the digest it stored, and the image index of several platforms.
"""

from .build import build_image, build_images, require_base, target_settings
from .push import push_image, push_index, push_service, registry_of, repository_of, require_registry
from .record import ImageSettings, ServiceImage, commit_facts, image_tag, service_image
from .verify import verify_image

__all__ = [
    "ImageSettings",
    "ServiceImage",
    "build_image",
    "build_images",
    "commit_facts",
    "image_tag",
    "push_image",
    "push_index",
    "push_service",
    "registry_of",
    "repository_of",
    "require_base",
    "require_registry",
    "service_image",
    "target_settings",
    "verify_image",
]
