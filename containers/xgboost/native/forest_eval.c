/*
 * The forest evaluator behind xgboost_container/forest.py: sums the leaf values that each row reaches
 * in a forest of complete binary trees.
 *
 * Layout (built and checked by forest.py): each tree is a complete binary tree of `depth` levels of
 * splits in heap order, node j's children being 2j+1 (left) and 2j+2 (right); its 2**depth - 1 split
 * nodes lie together in `nodes`, its 2**depth leaf values together in `leaf`. A split's feature indexes
 * a row widened to 2F columns: the first F with missing values (NaN) as -inf, the last F as +inf, so
 * `x >= threshold` sends a missing value the tree's default way with no test of its own. Padding
 * nodes have a NaN threshold: never >=, always left.
 *
 * Rows are walked LANES at a time through one tree, so that their independent chains of loads overlap,
 * and BLOCK rows at a time through all trees, so that the widened rows stay in cache.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define LANES 8
#define BLOCK 128

typedef struct {
    int32_t feature;
    float threshold;
} node_t;

/* out[i] = base + the sum over trees of row i's leaf value. Returns 0, or -1 when out of memory. */
int forest_margins(const double *rows, int64_t n, int64_t num_features, const node_t *nodes,
                   const double *leaf, int64_t trees, int32_t depth, double base, double *out)
{
    const int64_t width = 2 * num_features;
    const int64_t inner = ((int64_t)1 << depth) - 1, leaves = (int64_t)1 << depth;
    if (n <= 0) return 0;
    float *wide = malloc(sizeof(float) * (size_t)(width * (n < BLOCK ? n : BLOCK)));
    if (wide == NULL) return -1;
    for (int64_t start = 0; start < n; start += BLOCK) {
        const int64_t count = n - start < BLOCK ? n - start : BLOCK;
        double *o = out + start;
        for (int64_t i = 0; i < count; i++) {
            const double *x = rows + (start + i) * num_features;
            float *w = wide + i * width;
            for (int64_t f = 0; f < num_features; f++) {
                const float v = (float)x[f]; /* XGBoost compares float32 values too */
                w[f] = isnan(v) ? -INFINITY : v;
                w[num_features + f] = isnan(v) ? INFINITY : v;
            }
            o[i] = base;
        }
        for (int64_t t = 0; t < trees; t++) {
            const node_t *tree = nodes + t * inner;
            const double *values = leaf + t * leaves - inner; /* indexed by the final node number */
            int64_t i = 0;
            for (; i + LANES <= count; i += LANES) {
                const float *w = wide + i * width;
                int64_t node[LANES] = {0};
                for (int32_t level = 0; level < depth; level++)
                    for (int k = 0; k < LANES; k++) {
                        const node_t split = tree[node[k]];
                        node[k] = 2 * node[k] + 1 + (w[k * width + split.feature] >= split.threshold);
                    }
                for (int k = 0; k < LANES; k++) o[i + k] += values[node[k]];
            }
            for (; i < count; i++) {
                const float *w = wide + i * width;
                int64_t j = 0;
                for (int32_t level = 0; level < depth; level++)
                    j = 2 * j + 1 + (w[tree[j].feature] >= tree[j].threshold);
                o[i] += values[j];
            }
        }
    }
    free(wide);
    return 0;
}
