/* json.h - reading and lightly editing JSON documents (controller answers),
 * behind one small interface.  The only file that includes cJSON.
 *
 * Ownership: json_parse returns a tree the caller frees with json_free;
 * every other pointer returned points into that tree (borrowed). */
#ifndef QG_JSON_H
#define QG_JSON_H

#include <stdbool.h>
#include <stddef.h>

struct json;

struct json *json_parse(const char *text, size_t len);
void json_free(struct json *j);

/* Member of an object (NULL if j is not an object or has no such key). */
struct json *json_get(const struct json *j, const char *key);
/* Dotted path of object keys: "error.cause.message". */
struct json *json_path(const struct json *j, const char *path);
/* String value or NULL. */
const char *json_string(const struct json *j);
/* Dotted-path string, or NULL. */
const char *json_path_string(const struct json *j, const char *path);
/* Boolean value into *out; false if j is not a boolean. */
bool json_bool(const struct json *j, bool *out);
/* Number value into *out; false if j is not a number. */
bool json_number(const struct json *j, double *out);
bool json_is_object(const struct json *j);
bool json_is_array(const struct json *j);
/* Children of an array or object, in order; name for object members. */
struct json *json_first(const struct json *j);
struct json *json_next(const struct json *j);
const char *json_name(const struct json *j);
/* Replace a string node's value. */
void json_set_string(struct json *j, const char *s);
/* Remove and free an object member, if present. */
void json_remove(struct json *j, const char *key);
/* Compact text (malloc'ed). */
char *json_print(const struct json *j);

#endif
