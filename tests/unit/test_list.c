/* test_list.c - base/list.h: the intrusive doubly-linked list, checked
 * against an array model of the same operations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "base/list.h"

struct item {
    int value;
    struct list link;
};

/* The values of the list, first to last, walked both ways (so every prev
 * and next pointer is checked); returns the count. */
static int values(const struct list *head, int *out, int max)
{
    int n = 0;
    for (const struct list *p = head->next; p != head; p = p->next) {
        assert_ptr_equal(p->next->prev, p);
        assert_true(n < max);
        out[n++] = list_entry(p, const struct item, link)->value;
    }
    int k = n;
    for (const struct list *p = head->prev; p != head; p = p->prev)
        assert_int_equal(list_entry(p, const struct item, link)->value, out[--k]);
    assert_int_equal(k, 0);
    return n;
}

static void expect(const struct list *head, const int *want, int n)
{
    int got[64];
    assert_int_equal(values(head, got, 64), n);
    for (int i = 0; i < n; i++)
        assert_int_equal(got[i], want[i]);
    assert_int_equal(list_empty(head), n == 0);
}

static void test_empty(void **state)
{
    (void)state;
    struct list head;
    list_init(&head);
    assert_true(list_empty(&head));
    assert_null(list_first(&head));
    assert_null(list_last(&head));
    assert_null(list_pop_head(&head));
    expect(&head, NULL, 0);
}

static void test_insert_head_tail(void **state)
{
    (void)state;
    struct list head;
    struct item it[4] = {{.value = 0}, {.value = 1}, {.value = 2}, {.value = 3}};
    list_init(&head);
    for (int i = 0; i < 4; i++) {
        list_init(&it[i].link);
        assert_false(list_linked(&it[i].link));
    }
    list_insert_tail(&head, &it[1].link);
    list_insert_head(&head, &it[0].link);
    list_insert_tail(&head, &it[3].link);
    list_insert_after(&it[1].link, &it[2].link);
    expect(&head, (int[]){0, 1, 2, 3}, 4);
    assert_ptr_equal(list_first(&head), &it[0].link);
    assert_ptr_equal(list_last(&head), &it[3].link);
    for (int i = 0; i < 4; i++)
        assert_true(list_linked(&it[i].link));
}

static void test_remove(void **state)
{
    (void)state;
    struct list head;
    struct item it[3] = {{.value = 10}, {.value = 11}, {.value = 12}};
    list_init(&head);
    for (int i = 0; i < 3; i++)
        list_insert_tail(&head, &it[i].link);
    list_remove(&it[1].link); /* middle */
    expect(&head, (int[]){10, 12}, 2);
    assert_false(list_linked(&it[1].link));
    list_remove(&it[1].link); /* twice: harmless */
    expect(&head, (int[]){10, 12}, 2);
    list_remove(&it[0].link); /* first */
    expect(&head, (int[]){12}, 1);
    list_remove(&it[2].link); /* last and only */
    expect(&head, NULL, 0);
    /* reusable after removal */
    list_insert_head(&head, &it[1].link);
    expect(&head, (int[]){11}, 1);
    assert_ptr_equal(list_pop_head(&head), &it[1].link);
    assert_false(list_linked(&it[1].link));
    expect(&head, NULL, 0);
}

static void test_foreach_safe_frees(void **state)
{
    (void)state;
    struct list head;
    list_init(&head);
    for (int i = 0; i < 8; i++) {
        struct item *x = malloc(sizeof *x);
        assert_non_null(x);
        x->value = i;
        list_insert_tail(&head, &x->link);
    }
    /* remove and free the odd ones while walking */
    struct list *pos, *tmp;
    int seen = 0;
    list_foreach_safe(pos, tmp, &head) {
        struct item *x = list_entry(pos, struct item, link);
        assert_int_equal(x->value, seen++);
        if (x->value % 2) {
            list_remove(pos);
            free(x);
        }
    }
    assert_int_equal(seen, 8);
    expect(&head, (int[]){0, 2, 4, 6}, 4);
    list_foreach_safe(pos, tmp, &head) {
        list_remove(pos);
        free(list_entry(pos, struct item, link));
    }
    expect(&head, NULL, 0);
    seen = 0;
    list_foreach_safe(pos, tmp, &head)
        seen++;
    assert_int_equal(seen, 0);
}

/* Random operations against an array model. */
static void test_model(void **state)
{
    (void)state;
    enum { N = 32 };
    struct item it[N];
    int model[N], n = 0;
    struct list head;
    list_init(&head);
    for (int i = 0; i < N; i++) {
        it[i].value = i;
        list_init(&it[i].link);
    }
    uint32_t r = 12345;
    for (int step = 0; step < 20000; step++) {
        r = r * 1103515245u + 12345u;
        int i = (int)((r >> 8) % N);
        int op = (int)((r >> 20) % 3);
        if (list_linked(&it[i].link)) {
            int k = 0;
            while (model[k] != i)
                k++;
            for (; k + 1 < n; k++)
                model[k] = model[k + 1];
            n--;
            list_remove(&it[i].link);
        } else if (op == 0) {
            for (int k = n; k > 0; k--)
                model[k] = model[k - 1];
            model[0] = i;
            n++;
            list_insert_head(&head, &it[i].link);
        } else {
            model[n++] = i;
            list_insert_tail(&head, &it[i].link);
        }
        if (step % 97 == 0)
            expect(&head, model, n);
    }
    expect(&head, model, n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_insert_head_tail),
        cmocka_unit_test(test_remove),
        cmocka_unit_test(test_foreach_safe_frees),
        cmocka_unit_test(test_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
