"""paper_appendix/ is exactly what the code generates (regenerate with `cpi-theory appendix`)."""

import pathlib

import pytest

from cpi_theory.paper._appendix import FILES, build_pdf, render

APPENDIX = pathlib.Path(__file__).resolve().parents[1] / "paper_appendix"


@pytest.fixture(scope="module")
def generated():
    return render()


@pytest.mark.parametrize("name", FILES)
def test_committed_appendix_is_regenerated_byte_identically(generated, name):
    committed = (APPENDIX / name).read_text()
    assert committed == generated[name], f"{name} is stale: run `cpi-theory appendix`"


def test_equations_come_from_sympy_and_numbers_are_filled(generated):
    md = generated["appendix.md"]
    assert md.count("$$") >= 2 * 15
    assert "\\lambda_{C} = \\log" in md
    assert "| Lemma 4: m_C at t = 0 |" in md


def test_pdf_is_skipped_with_a_message_without_latex(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert build_pdf(tmp_path) == []
    assert "apt-get install" in capsys.readouterr().out
