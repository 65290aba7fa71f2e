import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def owners_of_distilled(apps, schema_editor):
    """A student distilled before checkpoints had owners belongs to its transfer's owner."""
    Checkpoint = apps.get_model("zoo", "Checkpoint")
    Transfer = apps.get_model("transferability", "Transfer")
    made = Transfer.objects.filter(result_checkpoint__isnull=False).values_list(
        "result_checkpoint_id", "evaluation__owner_id")
    for checkpoint_id, owner_id in made:
        Checkpoint.objects.filter(pk=checkpoint_id, owner__isnull=True).update(owner_id=owner_id)


class Migration(migrations.Migration):

    dependencies = [
        ('zoo', '0002_checkpoint_recipe'),
        ('transferability', '0006_transfer'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='checkpoint',
            name='owner',
            field=models.ForeignKey(blank=True, help_text="Empty: part of the shared zoo, seen by everyone. Set: made from this user's data (a distilled student), seen and evaluated by them alone.", null=True, on_delete=django.db.models.deletion.CASCADE, related_name='own_checkpoints', to=settings.AUTH_USER_MODEL),
        ),
        migrations.RunPython(owners_of_distilled, migrations.RunPython.noop),
    ]
