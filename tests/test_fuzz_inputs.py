"""Fuzzing the Python entry points: Demographics, the pipeline's arguments, cohort CSVs, lesion specs.

Each property: a result, or a user error (errors.USER_ERRORS) naming the field or file; nothing else.
"""

from __future__ import annotations

import codecs
import csv
import io
import json

import pytest
from hypothesis import strategies as st

from petct_pipeline import Demographics
from petct_pipeline.cohort import read_cohort
from petct_pipeline.lesions.spec import SHAPES, SITES, SPEC_FIELDS, parse_lesion_specs, read_lesion_specs
from petct_pipeline.pipeline_petct import check_sampling_argument
from tests.helpers.fuzz import PROFILES, fuzz, junk_text, junk_value, user_error_or_result

FIELDS = ("age", "sex", "weight", "height")
GOOD = {"age": 63, "sex": "F", "weight": 70, "height": 165}


def _one_of_values(good):
    return st.one_of(st.just(good), junk_value, st.floats(min_value=-1e3, max_value=1e3), st.integers(-500, 500))


@pytest.mark.parametrize("profile", PROFILES)
def test_demographics_of_any_type_and_value(profile):
    values = st.fixed_dictionaries({key: _one_of_values(GOOD[key]) for key in FIELDS} | {
        "sex": st.one_of(st.sampled_from(["M", "F", "male", "Female", " m ", "x", "", "MF"]), junk_value)})

    def check(kwargs):
        user_error_or_result(lambda: Demographics(**kwargs), names=lambda m: any(f in m for f in (*FIELDS, "BMI")))
        user_error_or_result(lambda: Demographics.from_mapping({k: str(v) for k, v in kwargs.items()}),
                             names=lambda m: any(f in m for f in (*FIELDS, "BMI")))

    fuzz(profile, 300, values, check)


SAMPLING = ("num_inference_steps", "sr_num_inference_steps", "back_projection_iterations", "guidance_scale",
            "sr_noise_level", "prior_scale")


@pytest.mark.parametrize("profile", PROFILES)
def test_sampling_arguments_of_any_type_and_value(profile):
    def check(case):
        name, value = case
        user_error_or_result(lambda: check_sampling_argument(name, value), names=lambda m: name in m)

    fuzz(profile, 300, st.tuples(st.sampled_from(SAMPLING), st.one_of(junk_value, st.floats(-5, 50))), check)


@pytest.mark.parametrize("profile", PROFILES)
def test_pipeline_call_with_one_odd_argument(profile, tiny_pipeline):
    """A pipeline call with one argument replaced by anything: a result or an error naming that argument."""
    arguments = ("demographics", *SAMPLING, "generator", "sr_chunk_size", "sr_chunk_overlap", "output_type",
                 "return_dict", "diagnosis", "lesions", "callback_on_step_end_tensor_inputs")

    def check(case):
        name, value = case
        kwargs = {"demographics": GOOD, "num_inference_steps": 1, "sr_num_inference_steps": 1, name: value}
        words = {"demographics": ("demographic", *FIELDS), "lesions": ("lesion",), "generator": ("generator",),
                 "callback_on_step_end_tensor_inputs": ("callback",)}.get(name, (name,))
        user_error_or_result(lambda: tiny_pipeline(**kwargs), names=lambda m: any(w in m for w in words))

    fuzz(profile, 40, st.tuples(st.sampled_from(arguments), junk_value), check)


# ------------------------------------------------------------------------------------------ cohort CSVs

COLUMNS = (*FIELDS, "seed", "id", "diagnosis")
GOOD_CELLS = {"age": "40", "sex": "M", "weight": "80", "height": "180", "seed": "7", "id": "s1",
              "diagnosis": "negative"}


@st.composite
def cohort_files(draw) -> bytes:
    """A cohort CSV as bytes: odd header spellings, extra columns, junk or good cells, quoting, encodings."""
    required = draw(st.lists(st.sampled_from(FIELDS), unique=True, max_size=4) if draw(st.integers(0, 4)) == 0
                    else st.permutations(FIELDS))
    header = [draw(st.sampled_from([name, name.upper(), f" {name.title()} "])) for name in required]
    header += draw(st.lists(st.sampled_from(["seed", "id", "diagnosis", "extra", "", " Note "]), unique=True))
    if draw(st.integers(0, 7)) == 0:
        header.append(draw(st.sampled_from(header or ["age"])))  # a column given twice
    rows = []
    for _ in range(draw(st.integers(0, 4))):
        width = max(len(header) + draw(st.sampled_from([0] * 9 + [-1, 1, 2])), 0)
        good = [GOOD_CELLS.get(header[i].strip().lower(), "x") if i < len(header) else "y" for i in range(width)]
        rows.append([cell if draw(st.integers(0, 9)) else draw(junk_text) for cell in good])  # 1 in 10 junk
        if draw(st.booleans()):
            rows.append([])  # blank line
    if draw(st.integers(0, 3)) == 0 and rows:
        rows.append(list(rows[0]))  # a duplicate row: the same id twice
    text = io.StringIO()
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]))
    csv.writer(text, quoting=quoting, lineterminator=draw(st.sampled_from(["\n", "\r\n", "\r"]))).writerows(
        [header, *rows])
    body = text.getvalue()
    if draw(st.integers(0, 3)) == 0:
        body = body[: draw(st.integers(0, len(body)))]  # truncated mid-field, or mid-quote
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "latin-1", "utf-16", "cp1252"]))
    data = body.encode(encoding, errors="replace")
    if draw(st.integers(0, 3)) == 0:
        data += draw(st.binary(max_size=16))
    return data


@pytest.mark.parametrize("profile", PROFILES)
def test_cohort_csv_of_any_shape_and_encoding(profile, tmp_path):
    path = tmp_path / "cohort.csv"

    def check(data):
        path.write_bytes(data)
        error = user_error_or_result(lambda: read_cohort(path, diagnoses=("NEGATIVE", "LYMPHOMA")),
                                     names=lambda m: str(path) in m)
        if error is None:
            rows = read_cohort(path, diagnoses=("NEGATIVE", "LYMPHOMA"))
            assert rows and len({row.id for row in rows}) == len(rows)

    fuzz(profile, 300, cohort_files(), check)


def test_cohort_csv_fuzzer_reaches_both_outcomes(tmp_path):
    """The generator above is not all junk: some files are read, some refused (else the property tests nothing)."""
    from hypothesis import find

    path = tmp_path / "c.csv"

    def readable(data):
        path.write_bytes(data)
        return user_error_or_result(lambda: read_cohort(path)) is None

    assert readable(find(cohort_files(), readable))
    assert not readable(find(cohort_files(), lambda data: not readable(data)))


@pytest.mark.parametrize("data,fragment", [
    ("age,sex,weight,height,id\n40,F,60,165,Jos\xe9\n".encode("latin-1"), "line 2: not UTF-8 text"),
    ("age,sex,weight,height\n40,F,60,165\n".encode("utf-16"), "not UTF-8 text"),
    (b'age,sex,weight,height\n40,F,60,"' + b"1" * 200_000 + b'"\n', "near line 2: field larger than field limit"),
    (b"age,Age,sex,weight,height\n40,50,F,60,165\n", "line 1: column 'age' appears twice"),
    (b"age,sex,weight,height\n40,F,60,165,7\n", "line 2: 5 fields but the header names 4"),
])
def test_cohort_csv_defects_found_by_fuzzing(tmp_path, data, fragment):
    """Found by the property above: each was a UnicodeDecodeError/csv.Error traceback or a silent guess."""
    from petct_pipeline.errors import InputError

    path = tmp_path / "c.csv"
    path.write_bytes(data)
    with pytest.raises(InputError, match=fragment) as caught:
        read_cohort(path)
    assert str(path) in str(caught.value)


# ------------------------------------------------------------------------------------------ lesion specs

_spec_value = st.one_of(junk_value, st.sampled_from([*SITES, *SHAPES, "liver", "kidney_left", "marrow", "lungs"]),
                        st.floats(0, 120), st.lists(st.floats(-500, 500), min_size=3, max_size=3))
lesion_items = st.one_of(
    st.dictionaries(st.sampled_from([*SPEC_FIELDS, "colour"]), _spec_value, max_size=6),
    st.fixed_dictionaries({"organ": st.just("liver"), "diameter_mm": st.floats(1, 110), "suv_max": _spec_value},
                          optional={"shape": _spec_value, "hu": _spec_value, "center_mm": _spec_value,
                                    "necrotic_fraction": _spec_value}),
    junk_value,
)


@pytest.mark.parametrize("profile", PROFILES)
def test_lesion_specs_of_any_shape(profile):
    def check(items):
        user_error_or_result(lambda: parse_lesion_specs(items), names=lambda m: "lesion" in m)

    fuzz(profile, 300, st.one_of(st.lists(lesion_items, max_size=3), junk_value), check)


@pytest.mark.parametrize("profile", PROFILES)
def test_lesion_spec_files_of_any_bytes(profile, tmp_path):
    path = tmp_path / "spec.json"
    texts = st.one_of(
        st.lists(lesion_items, max_size=2).map(lambda v: json.dumps(v, default=repr)),
        st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
        st.sampled_from(['[{"organ": "liver", "diameter_mm": 1' + "0" * 400 + ', "suv_max": 3}]',
                         '[{"organ": "liver", "diameter_mm": 1' + "0" * 5000 + ', "suv_max": 3}]',
                         "[" * 100_000 + "]" * 100_000, "\ufeff[]", ""]),
    )

    def check(case):
        text, encoding = case
        path.write_bytes(codecs.encode(text, encoding, errors="replace"))
        user_error_or_result(lambda: read_lesion_specs(path), names=lambda m: str(path) in m or "lesion" in m)

    fuzz(profile, 100, st.tuples(texts, st.sampled_from(["utf-8", "utf-8-sig", "utf-16"])), check)


@pytest.mark.parametrize("text,fragment", [
    ('[{"organ": "liver", "diameter_mm": 1' + "0" * 400 + ', "suv_max": 3}]', "diameter_mm=inf is not a finite"),
    ('[{"organ": "liver", "diameter_mm": 1' + "0" * 5000 + ', "suv_max": 3}]', "not valid JSON"),
    ('[{"organ": "liver", "diameter_mm": 9, "suv_max": 3, "center_mm": [1' + "0" * 400 + ", 0, 0]}]",
     "center_mm=inf is not a finite"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
])
def test_lesion_spec_defects_found_by_fuzzing(tmp_path, text, fragment):
    """Found by the properties above: OverflowError, ValueError (int digits limit) and RecursionError tracebacks."""
    from petct_pipeline.errors import InputError

    path = tmp_path / "spec.json"
    path.write_text(text)
    with pytest.raises(InputError, match=fragment):
        read_lesion_specs(path)


def test_a_utf8_bom_spec_file_is_read(tmp_path):
    """Windows editors write a BOM; a cohort CSV with one is read, so a spec file with one is too."""
    path = tmp_path / "spec.json"
    path.write_bytes(codecs.BOM_UTF8 + b'[{"organ": "liver", "diameter_mm": 20, "suv_max": 8}]')
    assert [spec.organ for spec in read_lesion_specs(path)] == ["liver"]


def test_demographics_defect_found_by_fuzzing():
    """An int too large for a float was an OverflowError traceback."""
    from petct_pipeline.errors import InputError

    with pytest.raises(InputError, match="weight must be finite"):
        Demographics(age=40, sex="F", weight=10**400, height=165)



@pytest.mark.parametrize("name,value,fragment", [
    ("guidance_scale", 10**400, "guidance_scale must be a finite number"),
    ("prior_scale", "0.5", "prior_scale must be a finite number"),
    ("lesions", 5, "lesions must be a list"),
    ("callback_on_step_end_tensor_inputs", True, "callback_on_step_end_tensor_inputs must be a list"),
    ("callback_on_step_end_tensor_inputs", [["latents"]], "must be in \\['latents'\\]"),
])
def test_pipeline_argument_defects_found_by_fuzzing(tiny_pipeline, name, value, fragment):
    """Found by the pipeline-call property: OverflowError and TypeError tracebacks from deep in the call."""
    from petct_pipeline.errors import InputError

    with pytest.raises(InputError, match=fragment):
        tiny_pipeline(GOOD, num_inference_steps=1, sr_num_inference_steps=1, **{name: value})
