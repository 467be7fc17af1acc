/* json.c - see json.h.  Wraps cJSON. */
#include "base/json.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

/* struct json is never defined: it is a cJSON node under another name. */
#define J(x) ((cJSON *)(x))
#define W(x) ((struct json *)(x))

struct json *json_parse(const char *text, size_t len)
{
    if (!text)
        return NULL;
    return W(cJSON_ParseWithLength(text, len));
}

void json_free(struct json *j)
{
    cJSON_Delete(J(j));
}

struct json *json_get(const struct json *j, const char *key)
{
    if (!j || !cJSON_IsObject(J(j)))
        return NULL;
    return W(cJSON_GetObjectItemCaseSensitive(J(j), key));
}

struct json *json_path(const struct json *j, const char *path)
{
    char part[128];
    const char *p = path;
    struct json *cur = (struct json *)j;
    while (cur && *p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n >= sizeof(part))
            return NULL;
        memcpy(part, p, n);
        part[n] = '\0';
        cur = json_get(cur, part);
        p += n + (dot ? 1 : 0);
    }
    return cur;
}

const char *json_string(const struct json *j)
{
    return (j && cJSON_IsString(J(j))) ? J(j)->valuestring : NULL;
}

const char *json_path_string(const struct json *j, const char *path)
{
    return json_string(json_path(j, path));
}

bool json_bool(const struct json *j, bool *out)
{
    if (!j || !cJSON_IsBool(J(j)))
        return false;
    *out = cJSON_IsTrue(J(j));
    return true;
}

bool json_number(const struct json *j, double *out)
{
    if (!j || !cJSON_IsNumber(J(j)))
        return false;
    *out = cJSON_GetNumberValue(J(j));
    return true;
}

bool json_is_object(const struct json *j)
{
    return j && cJSON_IsObject(J(j));
}

bool json_is_array(const struct json *j)
{
    return j && cJSON_IsArray(J(j));
}

struct json *json_first(const struct json *j)
{
    return (j && (cJSON_IsArray(J(j)) || cJSON_IsObject(J(j))))
               ? W(J(j)->child)
               : NULL;
}

struct json *json_next(const struct json *j)
{
    return j ? W(J(j)->next) : NULL;
}

const char *json_name(const struct json *j)
{
    return j ? J(j)->string : NULL;
}

void json_set_string(struct json *j, const char *s)
{
    if (j && cJSON_IsString(J(j)))
        cJSON_SetValuestring(J(j), s);
}

void json_remove(struct json *j, const char *key)
{
    if (j && cJSON_IsObject(J(j)))
        cJSON_DeleteItemFromObjectCaseSensitive(J(j), key);
}

char *json_print(const struct json *j)
{
    char *s = cJSON_PrintUnformatted(J(j));
    if (!s)
        abort();
    return s;
}
