from django import forms
from django.utils.html import format_html

from zoo.models import Checkpoint

from .leakage import leaked_among
from .metrics import REGISTRY
from .models import Evaluation


class DatasetUploadForm(forms.Form):
    name = forms.CharField(max_length=200)
    file = forms.FileField(help_text="A .zip with one folder per class, images inside.")


class CheckpointChoiceField(forms.ModelMultipleChoiceField):
    """Ids that cannot be primary keys are invalid choices, not a database error."""

    def _check_values(self, value):
        for pk in value:
            try:
                if not 0 < int(str(pk)) < 2**63:
                    raise ValueError
            except ValueError:
                raise forms.ValidationError(self.error_messages["invalid_choice"],
                                            code="invalid_choice", params={"value": pk})
        return super()._check_values(value)


class EvaluationForm(forms.Form):
    checkpoints = CheckpointChoiceField(
        queryset=Checkpoint.objects.filter(enabled=True),
        widget=forms.CheckboxSelectMultiple,
        help_text="Checkpoints to score.",
    )
    metrics = forms.MultipleChoiceField(
        choices=[(s.name, s.label) for s in REGISTRY.values()],
        widget=forms.CheckboxSelectMultiple, required=False,
        help_text="Leave empty for every metric that applies.",
    )
    correctness_source = forms.ChoiceField(
        choices=Evaluation.CorrectnessSource.choices,
        initial=Evaluation.CorrectnessSource.TARGET,
        label="Complementarity from",
    )
    score_stages = forms.BooleanField(required=False, label="Also score every stage")

    def __init__(self, *args, user, dataset=None, **kwargs):
        """``user``: whose checkpoints are offered besides the shared zoo. ``dataset``: the
        target; checkpoints trained on it (or on its twin) are offered but not ticked."""
        super().__init__(*args, **kwargs)
        field = self.fields["checkpoints"]
        field.queryset = field.queryset.visible_to(user)
        self.leakage = leaked_among(field.queryset, dataset) if dataset is not None else {}
        if self.leakage:
            field.label_from_instance = self._label
            field.help_text = ("Checkpoints to score. Those marked “trained on this data” have "
                               "learnt these images: left out unless you tick them, since "
                               "their scores here would flatter them.")
        if not self.is_bound:
            self.initial.setdefault("checkpoints", [c for c in field.queryset
                                                    if c.name not in self.leakage])

    def _label(self, checkpoint):
        reason = self.leakage.get(checkpoint.name)
        if not reason:
            return checkpoint.name
        return format_html('{} <span class="tag leak" title="{}">trained on this data</span>',
                           checkpoint.name, reason)
