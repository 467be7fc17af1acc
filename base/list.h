/* list.h - an intrusive, circular, doubly-linked list (the Linux list_head /
 * libuv QUEUE idiom): a `struct list` link is embedded in each element and
 * one more serves as the list's head; list_entry() gets the element back.
 * Insert and remove are O(1) and never allocate.  Plain C11.
 *
 * A link that is in no list points at itself (list_init, and list_remove
 * leaves it so), so list_linked() tells whether an element is in a list and
 * removing it twice is harmless.  A head must not be copied or moved while
 * the list is not empty (its elements point at it).
 *
 * Ownership: the list owns nothing; elements belong to whoever allocated
 * them, and must be removed before they are freed. */
#ifndef QG_LIST_H
#define QG_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct list {
    struct list *prev, *next;
};

/* The element of type `type` whose member `member` is the link at ptr. */
#define list_entry(ptr, type, member) \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* An empty list / an unlinked element. */
static inline void list_init(struct list *l)
{
    l->prev = l->next = l;
}

static inline bool list_empty(const struct list *head)
{
    return head->next == head;
}

/* Whether element n is in a list (after list_init or list_remove: no). */
static inline bool list_linked(const struct list *n)
{
    return n->next != n;
}

/* Puts n after `at` (n must be unlinked). */
static inline void list_insert_after(struct list *at, struct list *n)
{
    n->prev = at;
    n->next = at->next;
    at->next->prev = n;
    at->next = n;
}

/* n becomes the first element. */
static inline void list_insert_head(struct list *head, struct list *n)
{
    list_insert_after(head, n);
}

/* n becomes the last element. */
static inline void list_insert_tail(struct list *head, struct list *n)
{
    list_insert_after(head->prev, n);
}

/* Takes n out of its list (nothing when it is in none); n is left unlinked. */
static inline void list_remove(struct list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    list_init(n);
}

/* The first / last element's link, or NULL when the list is empty. */
static inline struct list *list_first(const struct list *head)
{
    return list_empty(head) ? NULL : head->next;
}

static inline struct list *list_last(const struct list *head)
{
    return list_empty(head) ? NULL : head->prev;
}

/* Takes the first element out and returns its link (NULL when empty). */
static inline struct list *list_pop_head(struct list *head)
{
    struct list *n = list_first(head);
    if (n)
        list_remove(n);
    return n;
}

/* Visits each link `pos` (a struct list *) of the list at head, first to
 * last; `tmp` (another struct list *) holds the next link, so the body may
 * remove (and free) pos.  It must not remove other elements. */
#define list_foreach_safe(pos, tmp, head) \
    for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head); \
         (pos) = (tmp), (tmp) = (pos)->next)

#endif
