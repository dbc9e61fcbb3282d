/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * Streaming rare-event detectors. Pure code: no I/O, no locks, no malloc.
 *
 * Shape of every detector type T:
 *   struct det_T_params     parameters; det_T_params_default() fills the
 *                           documented defaults, det_T_params_check() says
 *                           whether a filled struct is usable (-EINVAL).
 *   struct det_T_state      per-key state, fixed size, zero-initialised
 *                           (memset 0 or a fresh keytab slot is a valid
 *                           empty state).
 *   det_T_update(params, state, ..., struct det_result *r)
 *                           scores the observation against the state as it
 *                           was, then learns it.
 *
 * Scores: r->score is in [0,1] and calibrated: score = 1 - p, where p is
 * the estimated probability, for THIS key, of an observation at least this
 * surprising. Each detector first turns its observation into a model
 * surprise s = -log10(p_model) (Gaussian tail for zscore, Poisson tail for
 * rate, rarity mass for rare_category, ...); a per-key calibrator
 * (struct det_calib) then replaces p_model by the empirical frequency of
 * surprises at least s in the key's own decayed history, and where history
 * is too thin to say (the far tail), it extrapolates from the last level it
 * can vouch for, at the slope the data showed up to there. So a key whose
 * model says "1e-6" every hour gets a modest score, and score >= 0.999
 * means "about 1 in 1000 for this key" for every detector type.
 *
 * Save/load: det_state_save() / det_state_load() write a state as a small
 * versioned record (magic, version, type, size, then the state bytes in
 * host byte order: a checkpoint moves between hosts of one architecture).
 * A state loaded back continues bit-identically.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rarewatch/buf.h"

enum det_type {
    DET_THRESHOLD = 1,
    DET_ZSCORE,
    DET_QUANTILE,
    DET_RATE,
    DET_RARE_CATEGORY,
    DET_AUTO,
};

const char *det_type_name(enum det_type t);
/* Returns the type, or -EINVAL for an unknown name. */
int det_type_from_name(const char *name);

/* What the score is about; picks the reason sentence. */
enum det_why {
    DET_WHY_NONE = 0,
    DET_WHY_LEARNING,     /* still in the learning period: score is 0 */
    DET_WHY_ABOVE,        /* value above expected */
    DET_WHY_BELOW,        /* value below expected */
    DET_WHY_DAILY,        /* unusual for the time of day (auto) */
    DET_WHY_RATE_HIGH,    /* more events in the interval than expected */
    DET_WHY_RATE_LOW,     /* fewer (or no) events than expected */
    DET_WHY_NEW_CATEGORY, /* categorical value never seen for this key */
    DET_WHY_RARE_CATEGORY,/* seen before, but rare */
    DET_WHY_VOLATILITY,   /* the steps between values far larger than usual (auto):
                           * value the recent mean step, expected its usual size */
};

struct det_result {
    double score;    /* calibrated, [0,1]; 0 while learning */
    double surprise; /* calibrated -log10(p), >= 0 (score = 1 - 10^-surprise); NAN
                      * where zscore, quantile, rate and rare_category did not
                      * need it: read it with det_result_surprise() */
    double raw;      /* native raw score: sigmas (zscore, quantile), distance past
                      * the bound (threshold), else -log10 p_model */
    double value;    /* observed value (count for rate, probability for rare_category,
                      * recent mean step for auto's volatility) */
    double expected; /* what the model expected (mean, median, time-of-day
                      * profile, count; rare_category: the typical value's
                      * probability, for an alert only, else 0) */
    double scale;    /* spread used (sigma, robust sigma); 0 if none */
    double interval; /* rate: interval length in seconds */
    enum det_why why;
    bool alert;      /* the type's own alert rule fired (see its params) */
};

/* r->surprise, computed from the score where the update left it NAN. */
double det_result_surprise(const struct det_result *r);

/* Append one human sentence for r, e.g.
 *   amount 4812.50 is 6.3σ above the mean 52.10 for key "acct-9"
 *   country "RU" first seen for key "acct-9"
 *   orders: 12 events in 1m vs 2.1 expected
 * (names and values are quoted as JSON strings, so any bytes are safe).
 * field names the field (or the stream/rule for rate); key may be NULL or
 * "" for an unkeyed rule; category is the categorical value (rare_category
 * only, may be NULL otherwise). */
int det_reason(struct buf *out, enum det_type type, const struct det_result *r,
               const char *key, const char *field, const char *category);

/* ---- calibration ------------------------------------------------------ */

#define DET_CALIB_BINS 16
#define DET_CALIB_BIN_WIDTH 0.5 /* bins are this wide in log2(1 + surprise) */

/* How the calibrator scores past the levels its history can vouch for. */
enum det_calib_tail {
    DET_TAIL_DATA,       /* extrapolate at the slope the data showed (max_slope) */
    DET_TAIL_NO_SHARPER, /* that, but never more surprising than the model says:
                          * the data may temper the model's tail, not sharpen it */
    DET_TAIL_MODEL,      /* the model's own surprise (never below the top trusted
                          * level's) */
};

/* A decay 2^(-1/half_life) worked out once, with the half-life it is for:
 * a detector asks for the same one or two on every update, and params are
 * read-only (shared by shard workers) where it is used. Filled by the
 * *_params_default and *_params_prepare functions; a half-life changed
 * after them is still honoured (the memo no longer matches and the decay is
 * computed), only slower. */
struct det_decay_memo {
    double half_life, decay;
};

struct det_calib_params {
    double half_life; /* observations; default 10000, >= 10 */
    double min_mass;  /* decayed count needed above a level before the empirical
                       * tail is trusted there; default 10, >= 1 */
    double max_slope; /* past the trusted levels the calibrated surprise grows
                       * at most this fast per unit of model surprise; default
                       * INFINITY (the data's own slope); the rate detector's
                       * discrete counts need 1 (see detect_rate.c) */
    enum det_calib_tail tail; /* past the trusted levels; default DET_TAIL_DATA */
    struct det_decay_memo decay; /* of half_life (det_calib_params_prepare) */
};

/* Decayed histogram of model surprise s, bins uniform in log2(1 + s) up
 * to s = 180 (the last bin open), kept as tail sums: tail[j] is the
 * decayed count of surprises in bin j or above. 64 bytes. */
struct det_calib {
    float tail[DET_CALIB_BINS];
};

void det_calib_params_default(struct det_calib_params *p);
/* Work out half_life's decay (det_decay_memo); call after changing it. */
void det_calib_params_prepare(struct det_calib_params *p);
/* Calibrated surprise of model surprise s against the history (not learning s). */
double det_calib_surprise(const struct det_calib_params *p, const struct det_calib *c, double s);
/* Learn s. */
void det_calib_learn(const struct det_calib_params *p, struct det_calib *c, double s);

/* -log10 of the two-sided standard normal tail P(|Z| >= |z|), accurate far
 * into the tail (no underflow). */
double det_normal_surprise(double z);
/* -log10 of the two-sided Laplace tail at robust z (scale = 1.4826 MAD):
 * the quantile detector's model, linear in |z| (heavy tails). */
double det_laplace_surprise(double z);
/* -log10 P(X >= k) and -log10 P(X <= k) for X ~ Poisson(lambda), k real >= 0
 * (via regularized incomplete gamma; continuous in k). */
double det_poisson_upper_surprise(double k, double lambda);
double det_poisson_lower_surprise(double k, double lambda);

/* ---- threshold -------------------------------------------------------- */

struct det_threshold_params {
    double above;  /* alert when value > above; default +inf (off) */
    double below;  /* alert when value < below; default -inf (off) */
};

void det_threshold_params_default(struct det_threshold_params *p);
int det_threshold_params_check(const struct det_threshold_params *p);
/* Stateless: score 1 when a bound is crossed, else 0; raw is the distance
 * beyond the bound; expected the crossed bound. */
void det_threshold_eval(const struct det_threshold_params *p, double x, struct det_result *r);

/* ---- zscore ----------------------------------------------------------- */

struct det_zscore_params {
    double half_life;      /* in samples, default 200, >= 1; used when half_life_usec == 0 */
    int64_t half_life_usec;/* in event time, default 0 (= use half_life); > 0 wins */
    double threshold;      /* alert at |z| >= threshold, default 4 */
    double min_score;      /* alert also needs score >= this, default 0 (the
                            * sigma rule alone) */
    uint32_t min_samples;  /* no alerts before this many samples, default 30 */
    struct det_calib_params calib;
};

/* Exponentially weighted mean and variance (West's weighted update with
 * decayed weights). Shared by zscore and auto. */
struct det_ew {
    double weight;   /* decayed number of samples */
    double mean;
    double m2;       /* decayed sum of squared deviations */
};

struct det_zscore_state {
    struct det_ew ew;
    int64_t last_ts; /* usec, time-based half-life only */
    uint32_t n;
    uint32_t pad_;
    struct det_calib calib;
};

void det_zscore_params_default(struct det_zscore_params *p);
int det_zscore_params_check(const struct det_zscore_params *p);
/* ts_usec: event time (only read for a time-based half-life). */
void det_zscore_update(const struct det_zscore_params *p, struct det_zscore_state *s,
                       double x, int64_t ts_usec, struct det_result *r);

/* ---- quantile (robust: streaming median / MAD) ------------------------ */

struct det_quantile_params {
    double half_life;     /* samples over which median/MAD adapt, default 500, >= 8 */
    double threshold;     /* alert at robust |z| >= threshold, default 5 */
    double min_score;     /* alert also needs score >= this, default 0 */
    uint32_t min_samples; /* no alerts before this many samples, default 30 (>= 8) */
    struct det_calib_params calib;
};

/* Streaming robust location/scale: median and MAD by stochastic
 * approximation (sign steps scaled by the spread), started exactly from
 * the first DET_ROBUST_BOOT samples. */
#define DET_ROBUST_BOOT 8
struct det_robust {
    double median;
    double mad;      /* median absolute deviation from the median */
    double aad;      /* mean absolute deviation: a scale floor when MAD is 0 */
    double boot[DET_ROBUST_BOOT];
    uint32_t n;
    uint32_t far_run; /* quantile: consecutive far-tail surprises (det_finish_score) */
};

struct det_quantile_state {
    struct det_robust r;
    struct det_calib calib;
};

void det_quantile_params_default(struct det_quantile_params *p);
int det_quantile_params_check(const struct det_quantile_params *p);
void det_quantile_update(const struct det_quantile_params *p, struct det_quantile_state *s,
                         double x, struct det_result *r);

/* ---- rate (events per key per interval) ------------------------------- */

struct det_rate_params {
    int64_t interval_usec; /* default 60 s, >= 1 ms */
    double half_life;      /* in intervals, default 60, >= 1 */
    bool daily;            /* learn hour-of-day factors (UTC), default false;
                            * needs interval_usec <= 1 h */
    double min_score;      /* alert at score >= this, default 0.9999 */
    uint32_t min_intervals;/* no alerts before this many closed intervals, default 10 */
    double min_expected;   /* drops alert only if expected >= this, default 3 */
    struct det_calib_params calib;
    /* of half_life and of the level's (a day's worth with daily), by
     * det_rate_params_prepare */
    struct det_decay_memo decay, level_decay;
};

#define DET_RATE_RUN_MAX 4
/* What a non-daily update reads and writes fills the first 128 bytes (two
 * cache lines, with the table's header line three: at 100,000 keys an
 * update costs about a memory miss per line); the hour-of-day factors,
 * which only daily touches, come last (det_rate_state_hot). */
struct det_rate_state {
    int64_t cur;      /* index of the open interval (ts / interval), valid when started */
    double count;     /* events in the open interval */
    double mean;      /* EW mean count per interval (deseasonalised when daily) */
    double disp;      /* EW Pearson dispersion (1 = Poisson) */
    struct det_calib calib;
    /* The closed intervals before the open one, newest first, hist_len of
     * them: a closing interval is tested together with each run of
     * intervals it ends (a burst or a drop spanning several intervals is
     * one test), up to DET_RATE_RUN_MAX intervals long. */
    float hist_count[DET_RATE_RUN_MAX - 1], hist_expected[DET_RATE_RUN_MAX - 1];
    uint32_t n;       /* closed intervals */
    uint8_t started;
    uint8_t hist_len;
    uint16_t far_run; /* consecutive far-tail surprises (det_finish_score) */
    float hour[24];   /* daily: hour-of-day multiplicative factors, 0 = unset */
};

void det_rate_params_default(struct det_rate_params *p);
/* Work out the decays of the half-lives set (det_decay_memo); call after
 * changing half_life, interval_usec or daily. */
void det_rate_params_prepare(struct det_rate_params *p);
int det_rate_params_check(const struct det_rate_params *p);
/* Bytes at the start of a state that an update with p reads or writes:
 * all but the hour-of-day factors unless daily (for prefetching). */
size_t det_rate_state_hot(const struct det_rate_params *p);
/* Count n events at ts_usec. Intervals that ended before ts are closed first
 * (also the empty ones: no events is a drop); the most surprising closed
 * interval goes to *closed and the function returns the number closed (0:
 * *closed untouched). *running (may be NULL) scores the open interval's
 * count so far against the upper tail, so a spike alerts before its
 * interval ends. Events older than the open interval count into it. */
int det_rate_add(const struct det_rate_params *p, struct det_rate_state *s, int64_t ts_usec,
                 uint32_t n, struct det_result *closed, struct det_result *running);
/* Move time forward for a key that saw no events: closes intervals that
 * ended by now_usec, like det_rate_add. Call it for idle keys on a timer. */
int det_rate_tick(const struct det_rate_params *p, struct det_rate_state *s, int64_t now_usec,
                  struct det_result *closed);

/* ---- rare_category ---------------------------------------------------- */

#define DET_CATEGORY_SLOTS 16
struct det_category_params {
    double half_life;      /* events, default 1000, >= 1 */
    double alpha;          /* Dirichlet-process concentration: prior weight of
                            * "a new value", default 1, > 0 */
    uint32_t min_samples;  /* learning period in events, default 100 */
    double min_score;      /* alert at score >= this, default 0.999 */
    struct det_calib_params calib;
};

struct det_category_state {
    /* Values by the low 32 bits of their hash, bit 0 set; 0 = empty slot
     * (a 64-bit hash per slot made the state a cache line longer, and an
     * update touches all of it; two of 16 values sharing 32 bits is a
     * 1-in-270-million chance per new value, and then only merges counts) */
    uint32_t tag[DET_CATEGORY_SLOTS];
    float count[DET_CATEGORY_SLOTS];   /* decayed counts, in units of `unit` */
    uint64_t seen[2];  /* Bloom filter of every value hash ever seen */
    double unit;       /* lazy decay: true count = count / unit */
    double total;      /* decayed number of events, in units of `unit` */
    uint32_t n;
    uint32_t pad_;
    struct det_calib calib;
};

void det_category_params_default(struct det_category_params *p);
int det_category_params_check(const struct det_category_params *p);
/* value: the category's bytes (any; hashed). */
void det_category_update(const struct det_category_params *p, struct det_category_state *s,
                         const char *value, size_t len, struct det_result *r);

/* ---- auto (default for "is this number unusual") --------------------- */

/* Two views of one numeric series (its level; its time-of-day profile),
 * each calibrated against its own history, combined by Fisher's method and
 * calibrated once more; beside them a volatility view (the recent size of
 * the steps between samples), calibrated on its own, and the score is the
 * larger of the two. See detect_auto.c for the reasoning. */
struct det_auto_params {
    double half_life;      /* samples the baselines span, default 3000, >= 16 */
    double dedup_half_life;/* samples over which a reported peak damps the
                            * repeats that follow it (they score only when 10x
                            * rarer; it fades only on samples under 1-in-100),
                            * default 30; 0 = off */
    uint32_t min_samples;  /* learning period, default 50 (>= 2) */
    double min_score;      /* alert at score >= this, default 0.9999 */
    struct det_calib_params calib; /* default half_life 2000, not 10000:
                                    * rarity judged on recent history;
                                    * max_slope 0.7: past the trusted levels
                                    * the normal tail is tempered */
};

#define DET_AUTO_VIEWS 2
#define DET_AUTO_DAY_BINS 96
struct det_auto_state {
    struct det_ew level;          /* the value */
    struct det_ew resid;          /* x - daily profile */
    float day[DET_AUTO_DAY_BINS]; /* daily profile (15-minute bins) */
    uint64_t day_set[2];          /* which bins hold a value */
    int64_t first_ts;
    int64_t last_ts;
    double dt;         /* EW mean interval between samples, usec */
    double peak;       /* last reported surprise, for dedup */
    uint32_t n;
    uint32_t pad_;
    struct det_calib view[DET_AUTO_VIEWS];
    struct det_calib calib;
    /* Volatility view. The state grew by these 104 bytes: a saved state
     * of the older size fails det_state_load's size check and the key
     * starts fresh (there is no per-type layout number). */
    double prev_x;     /* the previous value */
    double vol_short;  /* EW mean |x - prev_x|, half-life DET_AUTO_VOL_HALF_LIFE */
    struct det_ew vol; /* long-run EW mean/variance of vol_short */
    struct det_calib vol_calib;
};
#define DET_AUTO_VOL_HALF_LIFE 8

void det_auto_params_default(struct det_auto_params *p);
int det_auto_params_check(const struct det_auto_params *p);
/* ts_usec: event time, > 0 to enable the time-of-day view (0: unknown). */
void det_auto_update(const struct det_auto_params *p, struct det_auto_state *s, double x,
                     int64_t ts_usec, struct det_result *r);

/* ---- state persistence ------------------------------------------------ */

/* Bytes of one key's state for the type (0 for threshold: stateless). */
size_t det_state_size(enum det_type t);
/* Append a versioned record of `state` (det_state_size(t) bytes) to out. */
int det_state_save(enum det_type t, const void *state, struct buf *out);
/* Parse one record at data[0..len): fills state (det_state_size(t) bytes);
 * returns the bytes consumed, or -EINVAL (bad magic/type/size), -EPROTO
 * (newer version), -ERANGE (values no update leaves: a negative or
 * non-finite count, a run history longer than its array, a time before
 * 1970; state is then filled but must not be used). */
int det_state_load(enum det_type t, void *state, const void *data, size_t len);
