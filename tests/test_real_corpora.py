"""The real corpora: the pinned Debian package fetched, checked and loaded as the default config does."""

import shutil

import pytest
import yaml

from repshift import data
from repshift.config import check_config, pattern_files
from test_config import SCHEMA, default_config


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    if not shutil.which("apt-get"):
        pytest.skip("apt-get is absent: the corpus package is fetched through apt (or pattern.mirror)")
    config = check_config(default_config(), SCHEMA)
    dest = tmp_path_factory.mktemp("corpora")
    data.fetch_pattern(pattern_files(config), dest, **{k: config["pattern"][k] for k in ("version", "sha256")})
    return dest


def test_counts_match_the_published_corpora(corpora):
    polarity = data.read_pattern_csv(corpora / "polarity-en-pang&lee2.csv")
    hedge = data.read_pattern_csv(corpora / "uncertainty-conll2010.csv")
    wsj = data.read_tagged(corpora / "tagged-en-wsj.txt")
    assert len(polarity.words) == 4000 and sorted(set(polarity.labels)) == ["-1", "1"]
    assert polarity.labels.count("1") == 2000
    assert len(hedge.words) == 3000 and sorted(set(hedge.labels)) == ["-1", "1"]
    assert len(wsj.words) == 1001
    assert sum(map(len, wsj.words)) == 25026
    assert len({t for tags in wsj.tags for t in tags}) == 44


def test_oanc_is_large_and_tagged(corpora):
    oanc = data.read_tagged(corpora / "tagged-en-oanc.txt")
    assert len(oanc.words) == 20000
    assert all(len(w) == len(t) for w, t in zip(oanc.words, oanc.tags))
