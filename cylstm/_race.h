/* The race of the per-step product's strategies inside one kernel call.
 *
 * In "measure" mode (cylstm/_plan.py) the first call of a new shape runs its
 * own steps with each candidate strategy in turn, one step each, and times
 * only the recurrent product (the gate math is the same for all of them).
 * Nothing runs twice and there is no call per candidate: what the race costs
 * is the time the slower candidates took on the steps they ran. Timings on a
 * shared machine are noisy, so:
 *   - a candidate's time is the fastest of its trials (noise only adds time);
 *   - one much slower than the rule's strategy (drop) leaves after one trial;
 *   - the race ends after `rounds` turns of every candidate, or as soon as the
 *     time lost would pass budget_fraction of the call (steps times the rule's
 *     time per product);
 *   - the rule's strategy stays unless another is faster by `margin`.
 * The rest of the call runs the winner. Plain C, no allocation, no globals:
 * each call keeps its race on its own stack.
 */
#ifndef CYLSTM_RACE_H
#define CYLSTM_RACE_H

#include <math.h>

#ifdef _WIN32
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
static double cylstm_seconds(void)
{
    LARGE_INTEGER count, frequency;
    QueryPerformanceCounter(&count);
    QueryPerformanceFrequency(&frequency);
    return (double)count.QuadPart / (double)frequency.QuadPart;
}
#else
#include <time.h>
static double cylstm_seconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}
#endif

#define CYLSTM_RACE_MAX 8

typedef struct {
    int count;                      /* candidates; kinds[0] is the rule's strategy */
    int kinds[CYLSTM_RACE_MAX];     /* their strategy numbers */
    double best[CYLSTM_RACE_MAX];   /* fastest product seen (seconds); HUGE_VAL: untried */
    int dropped[CYLSTM_RACE_MAX];
    int turn;                       /* the candidate whose trial comes next */
    int trials, max_trials;
    double lost;                    /* seconds: trials' time past the fastest candidate's */
    double budget_fraction, steps, drop, margin;
    int winner;                     /* strategy number once decided; -1 while racing */
} cylstm_race;

/* A race of `count` candidates (kinds[0]: the rule's) over a call of `steps`. */
static void cylstm_race_start(cylstm_race *race, int count, const int *kinds, int rounds,
                              double steps, double budget_fraction, double drop,
                              double margin)
{
    int i;
    if (count > CYLSTM_RACE_MAX)
        count = CYLSTM_RACE_MAX;
    race->count = count;
    for (i = 0; i < count; i++) {
        race->kinds[i] = kinds[i];
        race->best[i] = HUGE_VAL;
        race->dropped[i] = 0;
    }
    race->turn = 0;
    race->trials = 0;
    race->max_trials = rounds * count;
    race->lost = 0.0;
    race->budget_fraction = budget_fraction;
    race->steps = steps;
    race->drop = drop;
    race->margin = margin;
    race->winner = count > 1 ? -1 : kinds[0];
}

/* The strategy the next step runs. */
static int cylstm_race_kind(const cylstm_race *race)
{
    return race->winner >= 0 ? race->winner : race->kinds[race->turn];
}

static double cylstm_race_fastest(const cylstm_race *race)
{
    double fastest = HUGE_VAL;
    int i;
    for (i = 0; i < race->count; i++)
        if (race->best[i] < fastest)
            fastest = race->best[i];
    return fastest;
}

/* The winner: the fastest candidate, unless it beats the rule by less than the margin. */
static void cylstm_race_decide(cylstm_race *race)
{
    int i, fastest = 0;
    for (i = 1; i < race->count; i++)
        if (race->best[i] < race->best[fastest])
            fastest = i;
    if (!(race->best[fastest] < (1.0 - race->margin) * race->best[0]))
        fastest = 0;
    race->winner = race->kinds[fastest];
}

/* Record the trial just run (the product took `seconds`) and choose the next one. */
static void cylstm_race_record(cylstm_race *race, double seconds)
{
    int i = race->turn, next, left = 0;
    double fastest, budget;
    if (seconds < race->best[i])
        race->best[i] = seconds;
    fastest = cylstm_race_fastest(race);
    race->lost += seconds - fastest;
    race->trials++;
    if (i != 0 && race->best[i] > race->drop * race->best[0])
        race->dropped[i] = 1;
    for (next = 1; next < race->count; next++)
        left += !race->dropped[next];
    next = i;
    do {
        next = (next + 1) % race->count;
    } while (race->dropped[next]);
    race->turn = next;
    /* The budget is only known once the rule has run (it runs first). */
    budget = race->budget_fraction * race->steps * race->best[0];
    if (left == 0 || race->trials >= race->max_trials || race->lost >= budget
        || (race->best[next] < HUGE_VAL && race->lost + race->best[next] - fastest > budget))
        cylstm_race_decide(race);
}

#endif
