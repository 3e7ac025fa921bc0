"""Data sources. Match levels: 0 = the calibration plan (same night / one day), 1 = QC-sufficient,
2 = probably acceptable (one week), 3 = risky (unlimited)."""
from edps import ONE_DAY, ONE_WEEK, UNLIMITED, data_source

from . import soxs_keywords as kw
from .soxs_classification import (ARMS, bad_pixel_map, lamp_off, master_bias, master_dark, order_tab,
                                  raw_flats)

SETUP = [kw.instrume, kw.seq_arm, kw.det_binx, kw.det_biny, kw.det_win1_binx, kw.det_win1_biny]


def _calib(name, rules):
    return (data_source([name])
            .with_classification_rule(*rules)
            .with_match_keywords([kw.instrume, kw.seq_arm], time_range=ONE_DAY, level=0)
            .with_match_keywords([kw.instrume, kw.seq_arm], time_range=ONE_WEEK, level=2)
            .with_match_keywords([kw.instrume, kw.seq_arm], time_range=UNLIMITED, level=3)
            .build())


def _rules(d):
    return [d[a] for a in ARMS]


flats = (data_source(["FLAT"])
         .with_classification_rule(*raw_flats)
         .with_grouping_keywords([kw.instrume, kw.seq_arm, kw.exptime] + SETUP[2:])
         .with_setup_keywords(SETUP)
         .with_min_group_size(1)
         .build())
lamp_off_frames = (data_source(["LAMP_OFF"])
                   .with_classification_rule(*lamp_off)
                   .with_match_keywords([kw.instrume, kw.seq_arm, kw.exptime], time_range=ONE_DAY, level=0)
                   .with_match_keywords([kw.instrume, kw.seq_arm], time_range=ONE_DAY, level=2)
                   .build())
master_biases = _calib("MASTER_BIAS", _rules(master_bias))
master_darks = _calib("MASTER_DARK", _rules(master_dark))
order_centre_tables = _calib("ORDER_CENTRE_TABLE", _rules(order_tab))
bad_pixel_maps = (data_source(["BP_MAP"])
                  .with_classification_rule(*_rules(bad_pixel_map))
                  .with_match_keywords([kw.instrume, kw.seq_arm], time_range=UNLIMITED, level=0)
                  .build())
