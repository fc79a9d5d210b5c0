/* Rolling (median, MAD, count) along timelines: the baselines of a block of batches
 * (engine/discovery/rolling_robust.py says why and when it is used).
 *
 * Window j of a row is columns j + first .. j + last of its timeline, NaN values left out.
 * Consecutive windows differ by one value out and one in, so each row keeps its window's
 * known values sorted in a buffer and updates it with one shift of the values between the
 * two places (`replace`), instead of sorting every window again.
 *
 * The figures are those of robust_center_scale (anomaly.py) bit for bit: the median is
 * 0.5 * (s[lo] + s[hi]) of the sorted values, lo = (n - 1) / 2 and hi = n / 2; the MAD is
 * |0.5 * (d_lo + d_hi)| for the order statistics d_lo, d_hi of the deviations med - s[t]
 * (t < hi) and s[t] - med (t >= hi), each computed by the same single IEEE operation. Order
 * statistics are values, whatever order ties sort in. Build without -ffast-math (and with
 * -ffp-contract=off): nothing here may be reassociated.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Where the machine has AVX2 (x86-64), the counting loop below runs in its 4-wide compares,
 * picked at load time (an ifunc): the library stays portable and needs no -march. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define WIDE __attribute__((target_clones("avx2", "default")))
#else
#define WIDE
#endif

/* The interface's version, which rolling_robust.py checks before calling anything here: a
 * library built from an older copy of this file (the code updated, `make native` not run
 * since) has other signatures, and is set aside for the numpy path rather than called. Bump
 * it with any change to a function's arguments or meaning. */
int64_t rolling_robust_abi(void) { return 3; }

/* First index in s[0, n) whose value is >= v (v not NaN): the count of values below v. A
 * window holds some 60 values, and counting them all in vector compares costs less than the
 * half-dozen dependent loads of a binary search (~110 -> ~60 ns a window on real returns). */
WIDE static int64_t lower_bound(const double *s, int64_t n, double v) {
    int64_t below = 0;
    for (int64_t i = 0; i < n; i++) below += s[i] < v;
    return below;
}

static void insert(double *s, int64_t *n, double v) {
    int64_t at = lower_bound(s, *n, v);
    memmove(s + at + 1, s + at, (size_t)(*n - at) * sizeof(double));
    s[at] = v;
    *n += 1;
}

/* lower_bound of `out` and of `in` in one pass over s[0, n): the window is read once, not twice. */
WIDE static void lower_bounds(const double *s, int64_t n, double out, double in, int64_t *at_out, int64_t *at_in) {
    int64_t below_out = 0, below_in = 0;
    for (int64_t i = 0; i < n; i++) {
        below_out += s[i] < out;
        below_in += s[i] < in;
    }
    *at_out = below_out;
    *at_in = below_in;
}

/* Remove one value equal to `out` (present: it entered the window earlier) and insert `in`
 * in one shift of the values between the two places, not two shifts of the tails. */
static void replace(double *s, int64_t n, double out, double in) {
    int64_t from, to; /* `in`'s place with `out` still there */
    lower_bounds(s, n, out, in, &from, &to);
    if (to > from) { /* s[from+1 .. to-1] move down one; `in` goes before what was s[to] */
        memmove(s + from, s + from + 1, (size_t)(to - 1 - from) * sizeof(double));
        s[to - 1] = in;
    } else { /* s[to .. from-1] move up one */
        memmove(s + to + 1, s + to, (size_t)(from - to) * sizeof(double));
        s[to] = in;
    }
}

/* Remove one value equal to v (present). */
static void erase(double *s, int64_t *n, double v) {
    int64_t at = lower_bound(s, *n, v);
    memmove(s + at, s + at + 1, (size_t)(*n - at - 1) * sizeof(double));
    *n -= 1;
}

/* Deviations from med as two rising runs: A[t] = med - s[hi-1-t] (t < hi) and
 * B[t] = s[hi+t] - med (t < n - hi). */
#define A_AT(t) (med - s[hi - 1 - (t)])
#define B_AT(t) (s[hi + (t)] - med)

/* The MAD of sorted s[0, n), n >= 1, around med: the k-th smallest of two sorted runs, found
 * as how many of the lo + 1 smallest deviations come from A: the least i with
 * A[i] >= B[lo - i] (a predicate false then true as i grows). Consecutive windows differ by a
 * value each way, so the last window's i (`*guess`) is a step or two away: walked from there,
 * not searched for again (a binary search's chain of dependent loads cost ~3x the rest). */
static double sorted_mad(const double *s, int64_t n, double med, int64_t *guess) {
    int64_t lo = (n - 1) / 2, hi = n / 2, nb = n - hi, want = lo + 1;
    int64_t a_min = want > nb ? want - nb : 0, a_max = want < hi ? want : hi;
    int64_t i = *guess < a_min ? a_min : (*guess > a_max ? a_max : *guess);
#define ENOUGH(t) ((t) == a_max || A_AT(t) >= B_AT(want - 1 - (t)))
    if (ENOUGH(i))
        while (i > a_min && ENOUGH(i - 1)) i--;
    else
        do i++; while (!ENOUGH(i));
#undef ENOUGH
    *guess = i;
    int64_t j = want - i;
    double rank_lo = -INFINITY, rank_hi = INFINITY;
    if (i >= 1 && A_AT(i - 1) > rank_lo) rank_lo = A_AT(i - 1);
    if (j >= 1 && B_AT(j - 1) > rank_lo) rank_lo = B_AT(j - 1);
    if (hi > lo) {
        if (i < hi && A_AT(i) < rank_hi) rank_hi = A_AT(i);
        if (j < nb && B_AT(j) < rank_hi) rank_hi = B_AT(j);
    } else {
        rank_hi = rank_lo;
    }
    return fabs(0.5 * (rank_lo + rank_hi));
}

/* The window after s[0, n): `out` leaves it, `in` enters (either NaN: nothing). */
static void slide(double *s, int64_t *n, double out, double in) {
    if (!isnan(out) && !isnan(in))
        replace(s, *n, out, in);
    else if (!isnan(out))
        erase(s, n, out);
    else if (!isnan(in))
        insert(s, n, in);
}

/* For each of `rows` timelines (row r at line + r * row_stride, contiguous along time) and
 * each window j in [0, k): out[j * rows + r] for med, mad and n. `buffer` holds last - first
 * + 1 doubles.
 *
 * `carry` (NULL: none) keeps each row's last window from one call to the next, w = last -
 * first + 1 doubles a row each: carry_raw its values in timeline order, carry_sorted its known
 * ones sorted, carry_n how many (-1: none kept). A block's first window is its last one's a
 * slot on (the block's timeline starts with the ring the last one ended with): where the
 * kept values are this call's first window's but its newest, it is one slide from the kept
 * sort, not w inserts (a fifth of the kernel's time). Checked value by value (the bits), so a
 * row that changed owner, or a timeline not following on, is filled anew. */
void rolling_center_scale(const double *line, int64_t rows, int64_t row_stride, int64_t k, int64_t first,
                          int64_t last, double *med_out, double *mad_out, int64_t *n_out, double *buffer,
                          double *carry_raw, double *carry_sorted, int64_t *carry_n) {
    int64_t w = last - first + 1;
    int carry = carry_n != NULL;
    if (k <= 0) return; /* nothing to score, nothing to keep */
    for (int64_t r = 0; r < rows; r++) {
        const double *x = line + r * row_stride;
        double *s = carry ? carry_sorted + r * w : buffer;
        int64_t n = 0, guess = 0;
        if (carry && carry_n[r] >= 0 && !memcmp(carry_raw + r * w + 1, x + first, (size_t)(w - 1) * sizeof(double))) {
            n = carry_n[r];
            slide(s, &n, carry_raw[r * w], x[last]);
        } else {
            for (int64_t c = first; c <= last; c++)
                if (!isnan(x[c])) insert(s, &n, x[c]);
        }
        for (int64_t j = 0; j < k; j++) {
            if (j) slide(s, &n, x[j - 1 + first], x[j + last]);
            int64_t at = j * rows + r;
            n_out[at] = n;
            if (n == 0) {
                med_out[at] = NAN;
                mad_out[at] = NAN;
                continue;
            }
            double med = 0.5 * (s[(n - 1) / 2] + s[n / 2]);
            med_out[at] = med;
            mad_out[at] = sorted_mad(s, n, med, &guess);
        }
        if (carry) {
            memcpy(carry_raw + r * w, x + (k - 1) + first, (size_t)w * sizeof(double));
            carry_n[r] = n;
        }
    }
}

/* The volume estimates of a fold of k batches over e rows (windows.py `_fold_volume`, whose numpy
 * path says what each step means), row by row through the batches: each batch's diff starts
 * from the row's last fresh ticker before it, a carried state here where numpy builds running
 * maxima and gathers of [batch, row] arrays (some forty calls a block). `qv` and `event` are
 * [batch, row] with rows contiguous and batches `stride` apart; `departing` [batch, row]
 * contiguous, the day-old bucket volume as each batch opens (NaN unknown). `seen`, `last_qv`,
 * `last_ms` come in as each row's last sample before the fold and leave as after it; `since`
 * is each row's first sample time (NO_TIME: none). Every figure is the same single IEEE
 * operation numpy does, in the same order. The count of resets is returned. */
#define DAY_MS 86400000LL
int64_t fold_volume(const int64_t *ts, int64_t k, int64_t e, const double *qv, const int64_t *event, int64_t stride,
                    const double *departing, int64_t *seen, double *last_qv, int64_t *last_ms, const int64_t *since,
                    int64_t bucket_ms, int64_t gap_ms, double keep_after_reset, double noise, double *est_out,
                    uint8_t *fresh_out) {
    int64_t resets = 0;
    for (int64_t i = 0; i < e; i++) {
        int64_t first = since[i] == INT64_MIN ? ts[0] : since[i];
        int64_t latest = seen[i], ms = last_ms[i];
        double prev = last_qv[i];
        for (int64_t j = 0; j < k; j++) {
            double v = qv[j * stride + i];
            int64_t ev = event[j * stride + i];
            int fresh = ev > latest;
            int64_t dt = ts[j] - ms;
            int day_old = (j ? first : since[i]) <= ts[j] - DAY_MS;
            double part = (double)dt / (double)bucket_ms;
            double dep = departing[j * e + i] * (part < 1.0 ? part : 1.0);
            double average = prev * ((double)dt / (double)DAY_MS);
            if (!day_old || isnan(dep)) dep = average;
            double est = v - prev + dep;
            int reset = fresh && v < (prev - dep) * keep_after_reset;
            resets += reset;
            if (reset || dt > gap_ms) est = NAN;
            if (est < noise * average || !fresh) est = 0.0;
            est_out[j * e + i] = est;
            fresh_out[j * e + i] = (uint8_t)fresh;
            if (fresh) {
                latest = ev;
                prev = v;
                ms = ts[j];
            }
        }
        seen[i] = latest;
        last_qv[i] = prev;
        last_ms[i] = ms;
    }
    return resets;
}

/* Add a fold's k batches of estimates (est [batch, row], e rows) to the day ring's float32 sums
 * (row i's at ring + i * row_stride), batch j's to column cols[j], in batch order: each sum
 * taken in double and rounded to float, as numpy's float32 += float64 does (windows.py
 * `_fold_day_ring`, whose numpy path pads each bucket's batches to step all at once). */
void fold_day_ring(float *ring, int64_t row_stride, int64_t e, const int64_t *cols, int64_t k, const double *est) {
    for (int64_t j = 0; j < k; j++)
        for (int64_t i = 0; i < e; i++) {
            float *sum = ring + i * row_stride + cols[j];
            *sum = (float)((double)*sum + est[j * e + i]);
        }
}

/* The block kernels below are element-wise loops over a batch's rows, written so the compiler
 * turns them into vector code (selects, not branches): a scalar division per figure cost more
 * than numpy's calls. Where the machine has AVX-512 or AVX2, those clones are picked at load. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define WIDEST __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define WIDEST
#endif

/* numpy's element-wise maximum and minimum (NaN wins) and fmax and fmin (NaN loses), as its
 * vector loops give them on a block's arrays: a tie of +0.0 and -0.0 gives the second operand.
 * (The scores below never tie signed zeros: prices are positive, so a return is +0.0 or not
 * zero, and every clipped figure is clipped against +0.0.) */
static inline double np_maximum(double a, double b) { return a != a ? a : (b != b ? b : (a > b ? a : b)); }
static inline double np_minimum(double a, double b) { return a != a ? a : (b != b ? b : (a < b ? a : b)); }
static inline double np_fmax(double a, double b) { return b != b ? a : (a != a ? b : (a > b ? a : b)); }
static inline double np_fmin(double a, double b) { return b != b ? a : (a != a ? b : (a < b ? a : b)); }
/* heat.py `saturate`: x / (x + half) for x > 0, else 0. */
static inline double saturate(double x, double half) {
    double pos = np_maximum(x, 0.0);
    return pos / (pos + half);
}
/* How many of s[0, e) are strictly greater than v (`count_higher`'s count). */
static inline int64_t count_above(const double *s, int64_t e, double v) {
    int64_t above = 0;
    for (int64_t c = 0; c < e; c++) above += s[c] > v;
    return above;
}

/* Heat's figures for a block of k batches over e rows that each open a bar (heat.py `_parts`,
 * `_ticker`, `_rank_block` and `_heat`, whose numpy path is the reference), every row
 * ranked. Inputs [batch, row] contiguous; ret [batch, horizon, row] of n_ret horizons, the
 * first three 1, 5 and 15 min; `fresh` exp(-age / tau) (numpy's exp; NaN: unknown, 0).
 * cfg: momentum_z_half, momentum_min_return, runup_full, volume_z_half,
 * social_velocity_half, w_momentum, w_volume_surge, w_listing_freshness, w_social_velocity,
 * w_social_sentiment, w_rank_acceleration. parts [6, batch, row] in heat.COMPONENTS' order.
 * Each ranked batch's percentiles (share of active rows scoring strictly higher; rows from
 * extents[j] up unranked) climb from the ranked batch's before it, the first's from
 * pct_bar; `pct` [batch, row] is scratch. pct_prev_bar and pct_bar (e values each) are left
 * as the last ranked batch's previous and own percentiles. Returns that batch (-1: none). */
WIDEST int64_t heat_block(int64_t k, int64_t e, const double *price_z, const double *volume_z, const double *ret,
                          int64_t n_ret, const double *run_up, const uint8_t *traded, const double *fresh,
                          const double *social_velocity, const double *social_sentiment, const uint8_t *active,
                          const int64_t *extents, const double *cfg, double *parts, double *heat, double *pct,
                          double *pct_prev_bar, double *pct_bar) {
    int64_t m = k * e;
    double *momentum = parts, *volume = parts + m, *listing = parts + 2 * m, *social_v = parts + 3 * m,
           *social_s = parts + 4 * m, *rank = parts + 5 * m;
    /* Every part but rank acceleration, in loops of plain arithmetic, each figure then where it
     * counts: a division under a condition keeps the compiler from vector code. */
    for (int64_t at = 0; at < m; at++) momentum[at] = saturate(price_z[at], cfg[0]);
    if (cfg[1] > 0)
        for (int64_t j = 0; j < k; j++) { /* gated by the best of the 1, 5 and 15 min returns */
            const double *r1 = ret + j * n_ret * e, *r5 = r1 + e, *r15 = r1 + 2 * e;
            double *mom = momentum + j * e, *gate = pct + j * e; /* pct: scratch until the ranking */
            for (int64_t i = 0; i < e; i++) gate[i] = np_fmax(np_fmax(r1[i], r5[i]), r15[i]) / cfg[1];
            for (int64_t i = 0; i < e; i++) gate[i] = np_fmin(np_fmax(gate[i], 0.0), 1.0);
            for (int64_t i = 0; i < e; i++) mom[i] = mom[i] * gate[i];
        }
    for (int64_t at = 0; at < m; at++) pct[at] = run_up[at] / cfg[2];
    for (int64_t at = 0; at < m; at++) momentum[at] = np_fmax(momentum[at], np_fmin(np_fmax(pct[at], 0.0), 1.0));
    for (int64_t at = 0; at < m; at++) momentum[at] = traded[at] ? momentum[at] : 0.0;
    for (int64_t at = 0; at < m; at++) volume[at] = saturate(volume_z[at], cfg[3]);
    for (int64_t j = 0; j < k; j++) { /* only while the 5 min return is not negative */
        const double *r5 = ret + j * n_ret * e + e;
        double *vol = volume + j * e;
        double *rising = pct + j * e;
        for (int64_t i = 0; i < e; i++) rising[i] = r5[i] < 0.0 ? 0.0 : 1.0;
        for (int64_t i = 0; i < e; i++) vol[i] = vol[i] * rising[i];
    }
    for (int64_t at = 0; at < m; at++) listing[at] = fresh[at] != fresh[at] ? 0.0 : fresh[at];
    for (int64_t at = 0; at < m; at++) social_v[at] = saturate(social_velocity[at], cfg[4]);
    for (int64_t at = 0; at < m; at++) {
        double s = social_sentiment[at];
        social_s[at] = s < 0.0 ? 0.0 : (s > 1.0 ? 1.0 : s);
    }
    for (int64_t at = 0; at < m; at++) pct[at] = social_v[at] > 0 ? 1.0 : 0.0;
    for (int64_t at = 0; at < m; at++) social_s[at] = social_s[at] * pct[at];
    for (int64_t at = 0; at < m; at++) heat[at] = cfg[5] * momentum[at] + cfg[6] * volume[at]; /* the ticker part, until the heat replaces it */
    for (int64_t at = 0; at < m; at++) rank[at] = active[at] ? heat[at] : -INFINITY; /* the score ranked, until the climb replaces it */
    const double *prev = pct_bar;
    int64_t last_ranked = -1, before_last = -1;
    for (int64_t j = 0; j < k; j++) { /* rank acceleration and heat, batch after batch */
        int64_t o = j * e, active_n = 0;
        for (int64_t i = 0; i < e; i++) active_n += active[o + i] != 0;
        double *p = pct + o;
        for (int64_t i = 0; i < e; i++)
            p[i] = i >= extents[j] ? NAN : (double)count_above(rank + o, e, rank[o + i]) / (double)active_n;
        for (int64_t i = 0; i < e; i++) {
            int64_t at = o + i;
            double climb = 2.0 * (prev[i] - p[i]);
            climb = climb != climb ? 0.0 : (climb < 0.0 ? 0.0 : (climb > 1.0 ? 1.0 : climb));
            rank[at] = active_n > 0 && rank[at] > 0.0 ? climb : 0.0; /* score > 0: active, ticker > 0 */
        }
        for (int64_t at = o; at < o + e; at++)
            heat[at] = heat[at] + cfg[7] * listing[at] + cfg[8] * social_v[at] + cfg[9] * social_s[at] + cfg[10] * rank[at];
        for (int64_t at = o; at < o + e; at++) heat[at] = np_minimum(heat[at], 1.0);
        for (int64_t at = o; at < o + e; at++) heat[at] = 100.0 * heat[at];
        for (int64_t at = o; at < o + e; at++) heat[at] = active[at] ? heat[at] : 0.0;
        if (active_n > 0) {
            before_last = last_ranked;
            last_ranked = j;
            prev = p;
        }
    }
    if (last_ranked >= 0) {
        const double *was = before_last >= 0 ? pct + before_last * e : pct_bar;
        memmove(pct_prev_bar, was, (size_t)e * sizeof(double));
        memcpy(pct_bar, pct + last_ranked * e, (size_t)e * sizeof(double));
    }
    return last_ranked;
}
