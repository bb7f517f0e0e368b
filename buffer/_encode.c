/* The outbox's ingest hot path in C: ids, ISO texts and row tuples of one terminal's batch.
 *
 * buffer/ingest.py's Encoded._encode() does the same in Python; this module is an optional
 * accelerator (pyproject.toml builds it when a C compiler and the Python headers are there,
 * and punchgate runs without it). For a batch whose every punch is a terminal's ordinary
 * punch it returns exactly what the Python path computes, texts and objects alike; for
 * anything else it returns None and the Python path does the whole batch
 * (tests/buffer/test_ingest_compiled.py compares the two on generated batches).
 *
 * Why C: encoding was over half of a 1000-punch store, about 4 us a punch in Python (see
 * docs/performance.md); here it is a fraction of that.
 *
 * SHA-256 is written from FIPS 180-4; its constants are the first 32 bits of the fractional
 * parts of the square roots (H0) and cube roots (K) of the first primes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <stdint.h>
#include <string.h>

/* ---- SHA-256 ------------------------------------------------------------------------- */

static const uint32_t K[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u,
    0x3956c25bu, 0x59f111f1u, 0x923f82a4u, 0xab1c5ed5u,
    0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u,
    0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u,
    0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu,
    0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau,
    0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u,
    0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u,
    0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u,
    0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u,
    0xa2bfe8a1u, 0xa81a664bu, 0xc24b8b70u, 0xc76c51a3u,
    0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u,
    0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u,
    0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u,
    0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u
};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void
compress(uint32_t h[8], const unsigned char *block)
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++) {
        w[i] = ((uint32_t)block[4 * i] << 24) | ((uint32_t)block[4 * i + 1] << 16) |
               ((uint32_t)block[4 * i + 2] << 8) | (uint32_t)block[4 * i + 3];
    }
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROTR(w[i - 15], 7) ^ ROTR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROTR(w[i - 2], 17) ^ ROTR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = k + (ROTR(e, 6) ^ ROTR(e, 11) ^ ROTR(e, 25)) + ((e & f) ^ (~e & g)) +
                      K[i] + w[i];
        uint32_t t2 = (ROTR(a, 2) ^ ROTR(a, 13) ^ ROTR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += k;
}

/* The first three words of SHA-256(data): the id uses the digest's first 19 hex digits. */
static void
sha256_head(const unsigned char *data, size_t len, uint32_t out[3])
{
    uint32_t h[8] = {0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
                     0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u};
    size_t full = len / 64;
    for (size_t i = 0; i < full; i++) {
        compress(h, data + 64 * i);
    }
    unsigned char tail[128];
    size_t rest = len - full * 64;
    size_t tail_len = rest + 9 <= 64 ? 64 : 128;
    memcpy(tail, data + full * 64, rest);
    tail[rest] = 0x80;
    memset(tail + rest + 1, 0, tail_len - rest - 1);
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) {
        tail[tail_len - 1 - i] = (unsigned char)(bits >> (8 * i));
    }
    compress(h, tail);
    if (tail_len == 128) {
        compress(h, tail + 64);
    }
    out[0] = h[0];
    out[1] = h[1];
    out[2] = h[2];
}

/* ---- texts --------------------------------------------------------------------------- */

static const char HEX[] = "0123456789abcdef";

static char *
digits(char *at, long value, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        at[i] = (char)('0' + value % 10);
        value /= 10;
    }
    return at + width;
}

/* "YYYY-MM-DDTHH:MM:SS" as datetime.isoformat() writes it (years 1..9999); returns the end. */
static char *
iso_seconds(char *at, int year, int month, int day, int hour, int minute, int second)
{
    at = digits(at, year, 4);
    *at++ = '-';
    at = digits(at, month, 2);
    *at++ = '-';
    at = digits(at, day, 2);
    *at++ = 'T';
    at = digits(at, hour, 2);
    *at++ = ':';
    at = digits(at, minute, 2);
    *at++ = ':';
    return digits(at, second, 2);
}

/* Days from 1970-01-01 to a proleptic Gregorian date (negative before). */
static int64_t
days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* Milliseconds since the epoch of a datetime's fields, without its microseconds. */
static int64_t
whole_ms(PyObject *dt)
{
    int64_t days = days_from_civil(PyDateTime_GET_YEAR(dt), PyDateTime_GET_MONTH(dt),
                                   PyDateTime_GET_DAY(dt));
    return ((days * 24 + PyDateTime_DATE_GET_HOUR(dt)) * 60 + PyDateTime_DATE_GET_MINUTE(dt)) *
               60000 +
           (int64_t)PyDateTime_DATE_GET_SECOND(dt) * 1000;
}

/* ---- the batch ----------------------------------------------------------------------- */

static PyObject *s_device_id, *s_device_serial, *s_source, *s_device_time, *s_time_utc,
    *s_employee, *s_state_code, *s_suspect, *s_card, *s_raw, *s_utc_offset_minutes,
    *s_verify_code, *s_state, *s_verify, *s_value;

enum { N_FIELDS = 14 };

/* The punch's attributes in the order of the names above (new references), or -1. */
static int
fetch(PyObject *punch, PyObject *out[N_FIELDS])
{
    PyObject *names[N_FIELDS] = {
        s_device_id, s_device_serial, s_source,  s_device_time,        s_time_utc,
        s_employee,  s_state_code,    s_suspect, s_card,               s_raw,
        s_utc_offset_minutes,         s_verify_code, s_state,          s_verify};
    for (int i = 0; i < N_FIELDS; i++) {
        out[i] = PyObject_GetAttr(punch, names[i]);
        if (out[i] == NULL) {
            for (int j = 0; j < i; j++) {
                Py_DECREF(out[j]);
            }
            return -1;
        }
    }
    return 0;
}

static void
release(PyObject *fields[N_FIELDS])
{
    for (int i = 0; i < N_FIELDS; i++) {
        Py_DECREF(fields[i]);
    }
}

/* One ordinary punch appended to ids/rows/utcs: 1 done, 0 not ordinary, -1 error. */
static int
encode_one(PyObject *fields[N_FIELDS], Py_ssize_t index, const char *prefix,
           Py_ssize_t prefix_len, PyObject *device, PyObject *serial, PyObject *source,
           PyObject *utc_zone, int *wall, PyObject *ids, PyObject *rows, PyObject *utcs)
{
    PyObject *device_id = fields[0], *device_serial = fields[1], *src = fields[2];
    PyObject *local = fields[3], *utc = fields[4], *employee = fields[5], *code = fields[6];
    PyObject *suspect = fields[7], *offset = fields[10], *verify_code = fields[11];
    if (src != source || fields[8] != Py_None || fields[9] != Py_None ||
        verify_code == Py_None || offset == Py_None || !PyLong_CheckExact(offset) ||
        !PyLong_CheckExact(code) || !PyUnicode_CheckExact(employee) ||
        !PyDateTime_CheckExact(local) || PyDateTime_DATE_GET_TZINFO(local) != Py_None ||
        !PyDateTime_CheckExact(utc) || PyDateTime_DATE_GET_TZINFO(utc) != utc_zone) {
        return 0;
    }
    int same = PyObject_RichCompareBool(device_id, device, Py_EQ);
    if (same != 1) {
        return same < 0 ? -1 : 0;
    }
    same = PyObject_RichCompareBool(device_serial, serial, Py_EQ);
    if (same != 1) {
        return same < 0 ? -1 : 0;
    }
    int flagged = PyObject_IsTrue(suspect);
    if (flagged != 0) {
        return flagged < 0 ? -1 : 0;
    }
    int code_overflow = 0, offset_overflow = 0;
    long long code_value = PyLong_AsLongLongAndOverflow(code, &code_overflow);
    long long offset_value = PyLong_AsLongLongAndOverflow(offset, &offset_overflow);
    if (code_overflow || offset_overflow || offset_value > 1000000000LL || offset_value < -1000000000LL ||
        PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    Py_ssize_t employee_len;
    const char *employee_text = PyUnicode_AsUTF8AndSize(employee, &employee_len);
    if (employee_text == NULL) { /* e.g. a lone surrogate: the Python path says so */
        PyErr_Clear();
        return 0;
    }

    /* device_time's text, as isoformat() writes it */
    char when[32];
    int micro = PyDateTime_DATE_GET_MICROSECOND(local);
    char *end = iso_seconds(when, PyDateTime_GET_YEAR(local), PyDateTime_GET_MONTH(local),
                            PyDateTime_GET_DAY(local), PyDateTime_DATE_GET_HOUR(local),
                            PyDateTime_DATE_GET_MINUTE(local), PyDateTime_DATE_GET_SECOND(local));
    if (micro) {
        *end++ = '.';
        end = digits(end, micro, 6);
    }
    Py_ssize_t when_len = end - when;

    /* the hashed text: prefix, employee, \x1f, when, \x1f, state code in decimal */
    char code_text[24];
    int code_len = snprintf(code_text, sizeof code_text, "%lld", code_value);
    Py_ssize_t hashed_len = prefix_len + employee_len + 1 + when_len + 1 + code_len;
    unsigned char stack[256];
    unsigned char *hashed = hashed_len <= (Py_ssize_t)sizeof stack ? stack : PyMem_Malloc(hashed_len);
    if (hashed == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    unsigned char *at = hashed;
    memcpy(at, prefix, prefix_len);
    at += prefix_len;
    memcpy(at, employee_text, employee_len);
    at += employee_len;
    *at++ = 0x1f;
    memcpy(at, when, when_len);
    at += when_len;
    *at++ = 0x1f;
    memcpy(at, code_text, code_len);
    uint32_t digest[3];
    sha256_head(hashed, hashed_len, digest);
    if (hashed != stack) {
        PyMem_Free(hashed);
    }
    char h[24];
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 8; j++) {
            h[8 * i + j] = HEX[(digest[i] >> (28 - 4 * j)) & 15];
        }
    }

    /* the id: 48 bits of wall-clock milliseconds (floored at 0), "8", hash, variant, hash */
    int64_t whole = whole_ms(local);
    int64_t ms = whole + micro / 1000;
    if (ms < 0) {
        ms = 0;
    }
    char pid[36];
    for (int i = 0; i < 12; i++) {
        pid[i < 8 ? i : i + 1] = HEX[(ms >> (44 - 4 * i)) & 15];
    }
    pid[8] = '-';
    pid[13] = '-';
    pid[14] = '8';
    memcpy(pid + 15, h, 3);
    pid[18] = '-';
    pid[19] = "89ab"[(h[3] <= '9' ? h[3] - '0' : h[3] - 'a' + 10) & 3];
    memcpy(pid + 20, h + 4, 3);
    pid[23] = '-';
    memcpy(pid + 24, h + 7, 12);

    /* time_utc's text, isoformat(timespec="microseconds") */
    char utc_text[32];
    int utc_micro = PyDateTime_DATE_GET_MICROSECOND(utc);
    end = iso_seconds(utc_text, PyDateTime_GET_YEAR(utc), PyDateTime_GET_MONTH(utc),
                      PyDateTime_GET_DAY(utc), PyDateTime_DATE_GET_HOUR(utc),
                      PyDateTime_DATE_GET_MINUTE(utc), PyDateTime_DATE_GET_SECOND(utc));
    *end++ = '.';
    end = digits(end, utc_micro, 6);
    memcpy(end, "+00:00", 6);
    end += 6;
    if (*wall && (utc_micro != micro || whole_ms(utc) + offset_value * 60000 != whole)) {
        *wall = 0; /* e.g. a time in a DST gap: the drain checks such rows itself */
    }

    PyObject *state_value = PyObject_GetAttr(fields[12], s_value);
    PyObject *verify_value = state_value ? PyObject_GetAttr(fields[13], s_value) : NULL;
    if (verify_value == NULL) { /* not enum members: the Python path says what is wrong */
        Py_XDECREF(state_value);
        PyErr_Clear();
        return 0;
    }
    PyObject *pid_obj = PyUnicode_FromStringAndSize(pid, 36);
    PyObject *when_obj = PyUnicode_FromStringAndSize(when, when_len);
    PyObject *utc_obj = PyUnicode_FromStringAndSize(utc_text, end - utc_text);
    PyObject *index_obj = PyLong_FromSsize_t(index);
    PyObject *row = NULL;
    int result = -1;
    if (pid_obj && when_obj && utc_obj && index_obj) {
        row = PyTuple_Pack(10, index_obj, pid_obj, when_obj, state_value, verify_value, employee,
                           utc_obj, offset, code, verify_code);
        if (row && PyList_Append(ids, pid_obj) == 0 && PyList_Append(rows, row) == 0 &&
            PyList_Append(utcs, utc_obj) == 0) {
            result = 1;
        }
    }
    Py_XDECREF(row);
    Py_XDECREF(index_obj);
    Py_XDECREF(utc_obj);
    Py_XDECREF(when_obj);
    Py_XDECREF(pid_obj);
    Py_XDECREF(verify_value);
    Py_XDECREF(state_value);
    return result;
}

PyDoc_STRVAR(encode_batch_doc,
             "encode_batch(prefix, punches, device_id, serial, source, utc)\n--\n\n"
             "(ids, rows, utc_texts, wall_ok) of a batch of one terminal's ordinary punches, "
             "as Encoded._encode() computes them; None when any punch is not one.");

static PyObject *
encode_batch(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "encode_batch() takes 6 arguments");
        return NULL;
    }
    PyObject *prefix = args[0], *device = args[2], *serial = args[3], *source = args[4];
    PyObject *utc_zone = args[5];
    if (!PyUnicode_Check(prefix)) {
        PyErr_SetString(PyExc_TypeError, "encode_batch(): prefix must be a str");
        return NULL;
    }
    Py_ssize_t prefix_len;
    const char *prefix_text = PyUnicode_AsUTF8AndSize(prefix, &prefix_len);
    if (prefix_text == NULL) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    /* A tuple of its own: the items stay put whatever Python code a comparison runs. */
    PyObject *seq = PySequence_Tuple(args[1]);
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    PyObject *ids = PyList_New(0), *rows = PyList_New(0), *utcs = PyList_New(0);
    PyObject *result = NULL;
    int wall = 1, status = 1;
    if (ids && rows && utcs) {
        for (Py_ssize_t i = 0; i < count && status == 1; i++) {
            PyObject *fields[N_FIELDS];
            if (fetch(items[i], fields) < 0) {
                PyErr_Clear(); /* not a Punch: the Python path says what is wrong */
                status = 0;
                break;
            }
            status = encode_one(fields, i, prefix_text, prefix_len, device, serial, source,
                                utc_zone, &wall, ids, rows, utcs);
            release(fields);
        }
        if (status == 1) {
            result = Py_BuildValue("(OOOO)", ids, rows, utcs, wall ? Py_True : Py_False);
        } else if (status == 0) {
            result = Py_NewRef(Py_None);
        }
    }
    Py_XDECREF(ids);
    Py_XDECREF(rows);
    Py_XDECREF(utcs);
    Py_DECREF(seq);
    return result;
}

static PyMethodDef methods[] = {
    {"encode_batch", (PyCFunction)(void (*)(void))encode_batch, METH_FASTCALL, encode_batch_doc},
    {NULL, NULL, 0, NULL},
};

static int
intern_names(void)
{
    struct {
        PyObject **slot;
        const char *text;
    } names[] = {
        {&s_device_id, "device_id"},     {&s_device_serial, "device_serial"},
        {&s_source, "source"},           {&s_device_time, "device_time"},
        {&s_time_utc, "time_utc"},       {&s_employee, "employee"},
        {&s_state_code, "state_code"},   {&s_suspect, "suspect"},
        {&s_card, "card"},               {&s_raw, "raw"},
        {&s_utc_offset_minutes, "utc_offset_minutes"},
        {&s_verify_code, "verify_code"}, {&s_state, "state"},
        {&s_verify, "verify"},           {&s_value, "_value_"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        *names[i].slot = PyUnicode_InternFromString(names[i].text);
        if (*names[i].slot == NULL) {
            return -1;
        }
    }
    return 0;
}

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "buffer._encode",
    "Compiled ingest encoder for buffer/ingest.py (optional accelerator).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__encode(void)
{
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL || intern_names() < 0) {
        return NULL;
    }
    return PyModule_Create(&module_def);
}
