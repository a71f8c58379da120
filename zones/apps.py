from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class ZonesConfig(AppConfig):
    name = "zones"

    def ready(self) -> None:
        from zones.models import Zone
        from zones.selectors import zone_cache

        # The location hot path keeps zones in memory; an edit in this process shows at once (others: ≤ 30 s).
        def clear(**kwargs):
            zone_cache.clear()

        post_save.connect(clear, sender=Zone, dispatch_uid="zone-cache-save", weak=False)
        post_delete.connect(clear, sender=Zone, dispatch_uid="zone-cache-delete", weak=False)
