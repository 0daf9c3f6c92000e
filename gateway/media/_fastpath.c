/* Optional native fast path of the media relay (DESIGN.md, "The media relay").
 *
 * Session: a libsrtp session (protect / unprotect, RTP and RTCP), a drop-in for pylibsrtp.Session.
 * Egress:  one WebRTC transport's send side: its outbound Session, the shared socket, the peer,
 *          and its transport-cc send records with the reading of feedback against them.
 * Route:   a steady-state route installed by the Python router for one publisher SSRC: the
 *          per-subscriber header rewrite (SSRC, PT, sequence and timestamp offsets, extension ids)
 *          and counters that the router folds back into its own state (Route.take).
 * Ingress: one publish transport's receive side: its inbound Session, its installed routes and, when
 *          set_twcc() names the transport-cc extension, a bounded ring of packet arrivals.
 *
 * Ingress.handle(datagram) unprotects an SRTP packet. When it belongs to an installed route and is
 * newer than the route's last packet (by at most MAX_GAP), it is rewritten, protected and sent to
 * every output of the route with one sendmmsg. Then either:
 *   - None is returned: the packet is fully handled (accounted in the route's counters);
 *   - the plain packet is returned and the route's `teed` is True (a tee): the outputs have it, and
 *     the Python router does the rest (receive stream, NACKs for a gap, the downtracks that are not
 *     the route's outputs, e.g. one waiting for a keyframe of this layer). A route tees every packet
 *     while its `tee` is set, any packet that follows a gap, and packets past its deadline (the
 *     router's timers: layer checks, speaker updates; it then sets a new deadline);
 *   - the plain packet is returned and `teed` is False: the Python router does everything (late or
 *     repaired packets, unknown SSRC, anything unusual).
 * Python makes every decision (which downtracks are outputs, offsets, switches); C only executes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <srtp2/srtp.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define BUF_SIZE 2048
#define MAX_OUTPUTS 64
#define MAX_ROUTES 64 /* layer SSRCs per publish transport (3 layers x tracks) */
#define MAX_GAP 256 /* a newer packet past a gap up to this is forwarded (and teed for NACKs) */

static double fixed_clock = -1.0; /* set_clock(): a fixed time for deterministic tests */

static double monotonic_now(void) {
    if (fixed_clock >= 0.0) return fixed_clock;
    struct timespec tsp;
    clock_gettime(CLOCK_MONOTONIC, &tsp);
    return (double)tsp.tv_sec + (double)tsp.tv_nsec * 1e-9;
}

static PyObject *SrtpError = NULL; /* set by configure(): pylibsrtp.Error, so callers catch one type */

/* libsrtp entry points. They are taken from the libsrtp that pylibsrtp bundles (configure()), not
 * from the system's: Debian's libsrtp2 is built on NSS, which costs several times more per packet
 * than pylibsrtp's OpenSSL build. The headers (libsrtp2-dev) only provide the 2.x types and ABI. */
typedef srtp_err_status_t (*srtp_fn)(srtp_t, void *, int *);
static struct {
    srtp_err_status_t (*create)(srtp_t *, const srtp_policy_t *);
    srtp_err_status_t (*dealloc)(srtp_t);
    srtp_err_status_t (*policy_rtp)(srtp_crypto_policy_t *, srtp_profile_t);
    srtp_err_status_t (*policy_rtcp)(srtp_crypto_policy_t *, srtp_profile_t);
    srtp_fn protect, unprotect, protect_rtcp, unprotect_rtcp;
} L;

static PyObject *error_type(void) { return SrtpError ? SrtpError : PyExc_ValueError; }

/* ------------------------------------------------------------------------------------ Session */

typedef struct {
    PyObject_HEAD srtp_t ctx;
} Session;

static void Session_dealloc(Session *self) {
    if (self->ctx) L.dealloc(self->ctx);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Session_init(Session *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"key", "profile", "inbound", "window_size", "allow_repeat_tx", NULL};
    Py_buffer key;
    int profile, inbound, window = 1024, repeat = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "y*ip|ip", kwlist, &key, &profile, &inbound,
                                     &window, &repeat))
        return -1;
    srtp_policy_t policy;
    memset(&policy, 0, sizeof(policy));
    if (L.create == NULL) {
        PyBuffer_Release(&key);
        PyErr_SetString(error_type(), "libsrtp not loaded: call configure() first");
        return -1;
    }
    if (L.policy_rtp(&policy.rtp, (srtp_profile_t)profile) ||
        L.policy_rtcp(&policy.rtcp, (srtp_profile_t)profile)) {
        PyBuffer_Release(&key);
        PyErr_SetString(error_type(), "unsupported SRTP profile");
        return -1;
    }
    if (key.len < policy.rtp.cipher_key_len) {
        PyBuffer_Release(&key);
        PyErr_SetString(error_type(), "SRTP key too short");
        return -1;
    }
    unsigned char keybuf[64];
    memset(keybuf, 0, sizeof(keybuf));
    memcpy(keybuf, key.buf, key.len < 64 ? key.len : 64);
    PyBuffer_Release(&key);
    policy.ssrc.type = inbound ? ssrc_any_inbound : ssrc_any_outbound;
    policy.key = keybuf;
    policy.window_size = (unsigned long)window;
    policy.allow_repeat_tx = repeat;
    policy.next = NULL;
    if (self->ctx) {
        L.dealloc(self->ctx);
        self->ctx = NULL;
    }
    if (L.create(&self->ctx, &policy) != srtp_err_status_ok) {
        self->ctx = NULL;
        PyErr_SetString(error_type(), "srtp_create failed");
        return -1;
    }
    return 0;
}

static PyObject *session_apply(Session *self, PyObject *arg, srtp_fn fn, int grow, const char *what) {
    char *data;
    Py_ssize_t len;
    if (PyBytes_AsStringAndSize(arg, &data, &len) < 0) return NULL;
    if (self->ctx == NULL) {
        PyErr_SetString(error_type(), "SRTP session not initialised");
        return NULL;
    }
    if (len + grow > BUF_SIZE * 2 || len < 4) {
        PyErr_Format(error_type(), "%s: bad packet length", what);
        return NULL;
    }
    unsigned char buf[BUF_SIZE * 2 + SRTP_MAX_TRAILER_LEN];
    memcpy(buf, data, len);
    int n = (int)len;
    srtp_err_status_t status = fn(self->ctx, buf, &n);
    if (status != srtp_err_status_ok) {
        PyErr_Format(error_type(), "%s failed (%d)", what, (int)status);
        return NULL;
    }
    return PyBytes_FromStringAndSize((char *)buf, n);
}

static PyObject *Session_protect(Session *self, PyObject *arg) {
    return session_apply(self, arg, L.protect, SRTP_MAX_TRAILER_LEN, "srtp_protect");
}
static PyObject *Session_protect_rtcp(Session *self, PyObject *arg) {
    return session_apply(self, arg, L.protect_rtcp, SRTP_MAX_TRAILER_LEN + 4, "srtp_protect_rtcp");
}
static PyObject *Session_unprotect(Session *self, PyObject *arg) {
    return session_apply(self, arg, L.unprotect, 0, "srtp_unprotect");
}
static PyObject *Session_unprotect_rtcp(Session *self, PyObject *arg) {
    return session_apply(self, arg, L.unprotect_rtcp, 0, "srtp_unprotect_rtcp");
}

static PyMethodDef Session_methods[] = {
    {"protect", (PyCFunction)Session_protect, METH_O, NULL},
    {"protect_rtcp", (PyCFunction)Session_protect_rtcp, METH_O, NULL},
    {"unprotect", (PyCFunction)Session_unprotect, METH_O, NULL},
    {"unprotect_rtcp", (PyCFunction)Session_unprotect_rtcp, METH_O, NULL},
    {NULL}};

static PyTypeObject SessionType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "gateway.media._fastpath.Session",
    .tp_basicsize = sizeof(Session),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Session_init,
    .tp_dealloc = (destructor)Session_dealloc,
    .tp_methods = Session_methods,
};

/* ------------------------------------------------------------------------------------- Egress */

#define SEND_RING 8192   /* send records kept, indexed by sequence (gateway/media/feedback.py) */
#define TWCC_GROWTH 8     /* bytes stamp_twcc may add: a one-byte extension header and one word */
#define RECORD_MAX_AGE 5.0
#define MAX_FEEDBACK_RESULTS 2048
/* bwe.py's inter-arrival grouping and acknowledged bitrate, the same constants */
#define GROUP_LENGTH 0.005
#define BURST_DELTA 0.005
#define MAX_BURST 0.1
#define ARRIVAL_JUMP 3.0
#define ACKED_WINDOW 0.5
#define ACKED_MAX_SAMPLES 8192

typedef struct {
    PyObject_HEAD Session *tx;
    int fd; /* -1: closed or no peer yet */
    struct sockaddr_in addr;
    unsigned long long sent;
    /* transport-cc (draft-holmer-rmcat-transport-wide-cc-extensions-01) on the send side: every
     * packet sent gets the next transport-wide sequence number in element twcc_id and a send
     * record; feedback() reads the subscriber's feedback against them as feedback.py's
     * SendRecords and bwe.py's FeedbackReader do, so no per-packet work is left to Python */
    int twcc_id; /* 0 = off */
    uint16_t twcc_seq;
    int32_t rec_seq[SEND_RING]; /* -1: empty or read */
    uint16_t rec_size[SEND_RING];
    double rec_time[SEND_RING];
    /* bwe.py _InterArrival */
    double ia_first_send, ia_last_send, ia_first_arrival, ia_last_arrival;
    long long ia_size;
    int ia_has_prev;
    double ia_prev_send, ia_prev_arrival;
    /* bwe.py _AcknowledgedRate */
    int ack_start, ack_count;
    long long ack_octets;
    int ack_has_rate;
    double ack_rate;
    double ack_arrival[ACKED_MAX_SAMPLES];
    int ack_size[ACKED_MAX_SAMPLES];
} Egress;

static void egress_reset_records(Egress *eg) {
    memset(eg->rec_seq, 0xFF, sizeof(eg->rec_seq));
    eg->ia_first_send = -1.0;
    eg->ia_has_prev = 0;
    eg->ack_start = eg->ack_count = 0;
    eg->ack_octets = 0;
    eg->ack_has_rate = 0;
}

static void egress_record(Egress *eg, uint16_t seq, double sent, int size) {
    int slot = seq & (SEND_RING - 1);
    eg->rec_seq[slot] = seq;
    eg->rec_time[slot] = sent;
    eg->rec_size[slot] = (uint16_t)size;
}

/* Write SEQ into RFC 8285 element ID of a plain RTP packet of LEN bytes in a buffer of CAP bytes,
 * inserting the element (and a one-byte extension header when there is none) when absent; the
 * new length, or -1 when it cannot (an unknown extension profile, no room): sent unstamped.
 * Mirrors gateway/media/congestion.py stamp_transport_sequence. */
static int stamp_twcc(unsigned char *p, int len, int cap, int id, uint16_t seq) {
    if (len < 12 || id <= 0 || id > 255) return -1;
    int offset = 12 + 4 * (p[0] & 0x0F);
    if (offset > len) return -1;
    if (!(p[0] & 0x10)) {
        if (id > 14 || len + 8 > cap) return -1;
        memmove(p + offset + 8, p + offset, (size_t)(len - offset));
        unsigned char ext[8] = {0xBE, 0xDE, 0, 1, (unsigned char)(id << 4 | 1), seq >> 8, seq & 0xFF, 0};
        memcpy(p + offset, ext, 8);
        p[0] |= 0x10;
        return len + 8;
    }
    if (offset + 4 > len) return -1;
    int profile = p[offset] << 8 | p[offset + 1];
    int words = p[offset + 2] << 8 | p[offset + 3];
    int start = offset + 4, end = start + 4 * words, i = start, last = start;
    if (end > len) return -1;
    int one_byte = profile == 0xBEDE;
    if (!one_byte && (profile & 0xFFF0) != 0x1000) return -1;
    if (one_byte && id > 14) return -1;
    while (i < end) {
        int element, length, data;
        if (one_byte) {
            if (p[i] == 0) {
                i++;
                continue;
            }
            element = p[i] >> 4;
            if (element == 15) break;
            length = (p[i] & 0x0F) + 1;
            data = i + 1;
        } else {
            if (p[i] == 0) {
                i++;
                continue;
            }
            if (i + 1 >= end) break;
            element = p[i];
            length = p[i + 1];
            data = i + 2;
        }
        if (data + length > end) return -1;
        if (element == id) {
            if (length != 2) return -1;
            p[data] = seq >> 8;
            p[data + 1] = seq & 0xFF;
            return len;
        }
        i = data + length;
        last = i;
    }
    int need = one_byte ? 3 : 4;
    if (end - last < need) { /* grow the extension by one word */
        if (len + 4 > cap || words == 0xFFFF) return -1;
        memmove(p + end + 4, p + end, (size_t)(len - end));
        memset(p + end, 0, 4);
        words++;
        p[offset + 2] = words >> 8;
        p[offset + 3] = words & 0xFF;
        end += 4;
        len += 4;
    }
    memset(p + last, 0, (size_t)(end - last));
    if (one_byte) {
        p[last] = (unsigned char)(id << 4 | 1);
        p[last + 1] = seq >> 8;
        p[last + 2] = seq & 0xFF;
    } else {
        p[last] = (unsigned char)id;
        p[last + 1] = 2;
        p[last + 2] = seq >> 8;
        p[last + 3] = seq & 0xFF;
    }
    return len;
}

/* Stamp the next transport-wide sequence number (when set_twcc named an element) and record the
 * send; the packet's new length. */
static int egress_stamp(Egress *eg, unsigned char *p, int len, int cap, double now) {
    if (!eg->twcc_id) return len;
    int stamped = stamp_twcc(p, len, cap, eg->twcc_id, eg->twcc_seq);
    if (stamped < 0) return len;
    egress_record(eg, eg->twcc_seq++, now, stamped);
    return stamped;
}

static void Egress_dealloc(Egress *self) {
    Py_XDECREF(self->tx);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Egress_init(Egress *self, PyObject *args, PyObject *kwds) {
    PyObject *tx;
    if (!PyArg_ParseTuple(args, "O!", &SessionType, &tx)) return -1;
    Py_XDECREF(self->tx);
    Py_INCREF(tx);
    self->tx = (Session *)tx;
    self->fd = -1;
    memset(&self->addr, 0, sizeof(self->addr));
    egress_reset_records(self);
    return 0;
}

/* set_peer(fd, host, port) or set_peer(-1, "", 0) to stop sending */
static PyObject *Egress_set_peer(Egress *self, PyObject *args) {
    int fd, port;
    const char *host;
    if (!PyArg_ParseTuple(args, "isi", &fd, &host, &port)) return NULL;
    self->fd = -1;
    if (fd < 0) Py_RETURN_FALSE;
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) Py_RETURN_FALSE; /* IPv6: Python path */
    self->addr = addr;
    self->fd = fd;
    Py_RETURN_TRUE;
}

/* set_twcc(ext_id): stamp transport-wide sequence numbers into element ext_id (0 = off) */
static PyObject *Egress_set_twcc(Egress *self, PyObject *arg) {
    long ext_id = PyLong_AsLong(arg);
    if (ext_id == -1 && PyErr_Occurred()) return NULL;
    if (ext_id < 0 || ext_id > 255) {
        PyErr_SetString(PyExc_ValueError, "extension id must be 0-255");
        return NULL;
    }
    if (ext_id != self->twcc_id) egress_reset_records(self);
    self->twcc_id = (int)ext_id;
    Py_RETURN_NONE;
}

/* next_twcc_seq() -> the next transport-wide sequence number, taken (for the Python send path) */
static PyObject *Egress_next_twcc_seq(Egress *self, PyObject *unused) {
    return PyLong_FromLong(self->twcc_seq++);
}

/* record(seq, sent, size): a packet the Python path stamped and sent */
static PyObject *Egress_record(Egress *self, PyObject *args) {
    int seq, size;
    double sent;
    if (!PyArg_ParseTuple(args, "idi", &seq, &sent, &size)) return NULL;
    if (seq < 0 || seq > 0xFFFF || size < 0 || size > 0xFFFF) {
        PyErr_SetString(PyExc_ValueError, "sequence or size out of range");
        return NULL;
    }
    egress_record(self, (uint16_t)seq, sent, size);
    Py_RETURN_NONE;
}

/* bwe.py _InterArrival.add: 1 with the deltas when the packet closes a group */
static int inter_arrival_add(Egress *e, double send, double arrival, int size, double *send_delta,
                             double *arrival_delta) {
    if (e->ia_first_send < 0) {
        e->ia_first_send = e->ia_last_send = send;
        e->ia_first_arrival = e->ia_last_arrival = arrival;
        e->ia_size = size;
        return 0;
    }
    if (send < e->ia_first_send) return 0;
    int same = send - e->ia_first_send <= GROUP_LENGTH;
    if (!same) {
        double delta = arrival - e->ia_last_arrival;
        double propagation = delta - (send - e->ia_last_send);
        same = propagation < 0 && delta <= BURST_DELTA && arrival - e->ia_first_arrival < MAX_BURST;
    }
    if (same) {
        if (send > e->ia_last_send) e->ia_last_send = send;
        if (arrival > e->ia_last_arrival) e->ia_last_arrival = arrival;
        e->ia_size += size;
        return 0;
    }
    int closed = 0;
    if (e->ia_has_prev) {
        double sd = e->ia_last_send - e->ia_prev_send, ad = e->ia_last_arrival - e->ia_prev_arrival;
        if (!(ad > ARRIVAL_JUMP || ad < -ARRIVAL_JUMP) && sd >= 0) {
            *send_delta = sd;
            *arrival_delta = ad;
            closed = 1;
        }
    }
    e->ia_has_prev = 1;
    e->ia_prev_send = e->ia_last_send;
    e->ia_prev_arrival = e->ia_last_arrival;
    e->ia_first_send = e->ia_last_send = send;
    e->ia_first_arrival = e->ia_last_arrival = arrival;
    e->ia_size = size;
    return closed;
}

/* bwe.py _AcknowledgedRate.add */
static void acked_add(Egress *e, double arrival, int size) {
    if (e->ack_count) {
        int newest = (e->ack_start + e->ack_count - 1) % ACKED_MAX_SAMPLES;
        if (arrival < e->ack_arrival[newest] - ARRIVAL_JUMP) { /* the receiver's clock jumped */
            e->ack_start = e->ack_count = 0;
            e->ack_octets = 0;
        }
    }
    if (e->ack_count == ACKED_MAX_SAMPLES) { /* full: the oldest goes */
        e->ack_octets -= e->ack_size[e->ack_start];
        e->ack_start = (e->ack_start + 1) % ACKED_MAX_SAMPLES;
        e->ack_count--;
    }
    int slot = (e->ack_start + e->ack_count) % ACKED_MAX_SAMPLES;
    e->ack_arrival[slot] = arrival;
    e->ack_size[slot] = size;
    e->ack_count++;
    e->ack_octets += size;
    while (e->ack_count && arrival - e->ack_arrival[e->ack_start] > ACKED_WINDOW) {
        e->ack_octets -= e->ack_size[e->ack_start];
        e->ack_start = (e->ack_start + 1) % ACKED_MAX_SAMPLES;
        e->ack_count--;
    }
    if (e->ack_count > 1) {
        double span = arrival - e->ack_arrival[e->ack_start];
        if (span >= ACKED_WINDOW / 2) {
            e->ack_rate = (double)(e->ack_octets - e->ack_size[e->ack_start]) * 8 / span;
            e->ack_has_rate = 1;
        }
    }
}

typedef struct {
    int seq, size, received;
    double sent, arrival;
} Matched;

static PyObject *feedback_error(const char *message) {
    PyErr_SetString(PyExc_ValueError, message);
    return NULL;
}

/* feedback(packet, now, probe_start, probe_end) -> ((expected, lost, acked bitrate or None,
 * [(send delta, arrival delta, arrival)]), rtt or None, [probe packet results], last sequence):
 * one transport-cc feedback packet (RTCP RTPFB FMT 15) read against the send records, as
 * feedback.py SendRecords.feedback (twcc.py parse_feedback, bwe.py FeedbackReader.read) does;
 * ValueError on a malformed packet, which changes nothing. */
static PyObject *Egress_feedback(Egress *self, PyObject *args) {
    Py_buffer view;
    double now, probe_start, probe_end;
    if (!PyArg_ParseTuple(args, "y*ddd", &view, &now, &probe_start, &probe_end)) return NULL;
    const unsigned char *p = view.buf;
    Py_ssize_t size = view.len;
    static uint8_t symbols[65536];
    static long long ticks_at[MAX_FEEDBACK_RESULTS];
    static Matched matched[MAX_FEEDBACK_RESULTS];
    const char *error = NULL;
    int count = 0, base = 0, n = 0;
    if (size < 20) error = "transport-cc feedback truncated";
    else if (p[0] >> 6 != 2 || p[1] != 205 || (p[0] & 0x1F) != 15)
        error = "not a transport-cc feedback packet";
    Py_ssize_t end = 0;
    if (!error) {
        end = 4 + 4 * (Py_ssize_t)(p[2] << 8 | p[3]);
        if (end > size) error = "transport-cc feedback truncated";
        else if (p[0] & 0x20) {
            int padding = p[end - 1];
            if (padding == 0 || end - padding < 20) error = "RTCP padding invalid";
            else end -= padding;
        }
    }
    if (!error) {
        base = p[12] << 8 | p[13];
        count = p[14] << 8 | p[15];
        long long ticks = (long long)(p[16] << 16 | p[17] << 8 | p[18]) * 256;
        Py_ssize_t offset = 20;
        int have = 0;
        while (have < count && !error) {
            if (offset + 2 > end) {
                error = "transport-cc status chunks truncated";
                break;
            }
            int chunk = p[offset] << 8 | p[offset + 1];
            offset += 2;
            if (!(chunk & 0x8000)) {
                int run = chunk & 0x1FFF;
                if (run > count - have) run = count - have;
                memset(symbols + have, chunk >> 13 & 0x3, (size_t)run);
                have += run;
            } else if (chunk & 0x4000) {
                for (int k = 0; k < 7; k++)
                    if (have < count) symbols[have++] = chunk >> (12 - 2 * k) & 0x3;
            } else {
                for (int k = 0; k < 14; k++)
                    if (have < count) symbols[have++] = chunk >> (13 - k) & 0x1;
            }
        }
        n = count < MAX_FEEDBACK_RESULTS ? count : MAX_FEEDBACK_RESULTS;
        for (int i = 0; i < count && !error; i++) {
            int symbol = symbols[i];
            if (symbol == 1) {
                if (offset + 1 > end) error = "transport-cc receive deltas truncated";
                else ticks += p[offset++];
            } else if (symbol == 2) {
                if (offset + 2 > end) error = "transport-cc receive deltas truncated";
                else {
                    ticks += (int16_t)(p[offset] << 8 | p[offset + 1]);
                    offset += 2;
                }
            } else if (symbol == 3) error = "transport-cc reserved status symbol";
            if (i < n) ticks_at[i] = ticks;
        }
    }
    PyBuffer_Release(&view);
    if (error) return feedback_error(error);

    PyObject *probe = PyList_New(0), *deltas = PyList_New(0);
    if (probe == NULL || deltas == NULL) goto fail;
    int found = 0, have_rtt = 0;
    double rtt = 0, oldest = now - RECORD_MAX_AGE;
    for (int i = 0; i < n; i++) {
        int seq = (base + i) & 0xFFFF, slot = seq & (SEND_RING - 1);
        if (self->rec_seq[slot] != seq) continue; /* never sent, or overwritten */
        self->rec_seq[slot] = -1;                 /* each packet counts once */
        double sent = self->rec_time[slot];
        if (sent < oldest || sent > now) continue;
        Matched *m = &matched[found++];
        m->seq = seq;
        m->sent = sent;
        m->size = self->rec_size[slot];
        m->received = symbols[i] != 0;
        m->arrival = (double)ticks_at[i] / 4000;
        if (probe_start <= sent && sent <= probe_end) {
            PyObject *item = m->received ? Py_BuildValue("(idid)", seq, sent, m->size, m->arrival)
                                         : Py_BuildValue("(idiO)", seq, sent, m->size, Py_None);
            if (item == NULL || PyList_Append(probe, item) < 0) {
                Py_XDECREF(item);
                goto fail;
            }
            Py_DECREF(item);
        }
        if (m->received && (!have_rtt || now - sent < rtt)) {
            rtt = now - sent;
            have_rtt = 1;
        }
    }
    /* in send order (stable: the records come in sequence order, nearly sorted already) */
    for (int i = 1; i < found; i++) {
        Matched item = matched[i];
        int j = i - 1;
        while (j >= 0 && matched[j].sent > item.sent) {
            matched[j + 1] = matched[j];
            j--;
        }
        matched[j + 1] = item;
    }
    int lost = 0;
    for (int i = 0; i < found; i++) {
        Matched *m = &matched[i];
        if (!m->received) {
            lost++;
            continue;
        }
        acked_add(self, m->arrival, m->size);
        double send_delta, arrival_delta;
        if (inter_arrival_add(self, m->sent, m->arrival, m->size, &send_delta, &arrival_delta)) {
            PyObject *item = Py_BuildValue("(ddd)", send_delta, arrival_delta, m->arrival);
            if (item == NULL || PyList_Append(deltas, item) < 0) {
                Py_XDECREF(item);
                goto fail;
            }
            Py_DECREF(item);
        }
    }
    PyObject *acked = self->ack_has_rate ? PyFloat_FromDouble(self->ack_rate) : Py_NewRef(Py_None);
    PyObject *rtt_value = have_rtt ? PyFloat_FromDouble(rtt) : Py_NewRef(Py_None);
    if (acked == NULL || rtt_value == NULL) {
        Py_XDECREF(acked);
        Py_XDECREF(rtt_value);
        goto fail;
    }
    int last = n > 0 ? (base + n - 1) & 0xFFFF : -1;
    return Py_BuildValue("((iiNN)NNi)", found, lost, acked, deltas, rtt_value, probe, last);
fail:
    Py_XDECREF(probe);
    Py_XDECREF(deltas);
    return NULL;
}

/* stamp(packet) -> the packet stamped as the fast path would send it (and recorded); for tests */
static PyObject *Egress_stamp(Egress *self, PyObject *arg) {
    char *data;
    Py_ssize_t size;
    if (PyBytes_AsStringAndSize(arg, &data, &size) < 0) return NULL;
    if (size > BUF_SIZE) {
        PyErr_SetString(PyExc_ValueError, "packet too long");
        return NULL;
    }
    unsigned char buf[BUF_SIZE + TWCC_GROWTH];
    memcpy(buf, data, (size_t)size);
    struct timespec tsp;
    clock_gettime(CLOCK_MONOTONIC, &tsp);
    double now = (double)tsp.tv_sec + (double)tsp.tv_nsec * 1e-9;
    int n = egress_stamp(self, buf, (int)size, (int)sizeof(buf), now);
    return PyBytes_FromStringAndSize((char *)buf, n);
}

static PyObject *Egress_get_sent(Egress *self, void *closure) { return PyLong_FromUnsignedLongLong(self->sent); }
static PyObject *Egress_get_ready(Egress *self, void *closure) { return PyBool_FromLong(self->fd >= 0); }
static PyObject *Egress_get_twcc_seq(Egress *self, void *closure) { return PyLong_FromLong(self->twcc_seq); }

static PyGetSetDef Egress_getset[] = {
    {"sent", (getter)Egress_get_sent, NULL, NULL, NULL},
    {"ready", (getter)Egress_get_ready, NULL, NULL, NULL},
    {"twcc_seq", (getter)Egress_get_twcc_seq, NULL, NULL, NULL},
    {NULL}};
static PyMethodDef Egress_methods[] = {
    {"set_peer", (PyCFunction)Egress_set_peer, METH_VARARGS, NULL},
    {"set_twcc", (PyCFunction)Egress_set_twcc, METH_O, NULL},
    {"next_twcc_seq", (PyCFunction)Egress_next_twcc_seq, METH_NOARGS, NULL},
    {"record", (PyCFunction)Egress_record, METH_VARARGS, NULL},
    {"feedback", (PyCFunction)Egress_feedback, METH_VARARGS, NULL},
    {"stamp", (PyCFunction)Egress_stamp, METH_O, NULL},
    {NULL}};

static PyTypeObject EgressType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "gateway.media._fastpath.Egress",
    .tp_basicsize = sizeof(Egress),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Egress_init,
    .tp_dealloc = (destructor)Egress_dealloc,
    .tp_getset = Egress_getset,
    .tp_methods = Egress_methods,
};

/* -------------------------------------------------------------------------------------- Route */

typedef struct {
    Egress *egress;
    uint32_t ssrc;
    uint8_t payload_type;
    uint16_t seq_offset;
    uint32_t ts_offset;
    uint8_t extmap[16];
    /* VP8 payload descriptor continuity (Forwarder.vp8_outgoing): added to the source's values */
    uint16_t vp8_picture_offset;
    uint8_t vp8_tl0_offset, vp8_key_offset;
    int vp8_rewrite;
    PyObject *history_packets; /* the router's SendHistory lists, kept in sync directly */
    PyObject *history_seqs;
    Py_ssize_t mask;
} Output;

typedef struct {
    PyObject_HEAD uint32_t ssrc;
    uint8_t payload_type; /* of the publisher's media packets on this SSRC */
    int tee;              /* hand every forwarded packet to Python too */
    int teed;             /* the packet just handed back was forwarded to the outputs */
    uint16_t prev_seq;    /* the newest packet forwarded (teed ones included) */
    uint16_t last_seq;    /* the newest packet accounted here (not teed: Python accounts those) */
    double deadline; /* monotonic seconds: the Python router takes over from then on */
    double clock_rate;
    int level_id; /* RFC 6464 extension id, 0 = none */
    int active_level;
    int vp8_rewrite; /* some output rewrites the VP8 PictureID / TL0PICIDX / KEYIDX */
    /* state, read by take() */
    double transit, jitter, last_time;
    uint32_t last_ts;
    long long packets, octets, wraps, samples, active_samples;
    double active_sum;
    int n_outputs;
    Output outputs[MAX_OUTPUTS];
} Route;

static void Route_clear_outputs(Route *self) {
    for (int i = 0; i < self->n_outputs; i++) {
        Py_CLEAR(self->outputs[i].egress);
        Py_CLEAR(self->outputs[i].history_packets);
        Py_CLEAR(self->outputs[i].history_seqs);
    }
    self->n_outputs = 0;
}

static void Route_dealloc(Route *self) {
    Route_clear_outputs(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Route(ssrc, payload_type, last_seq, last_ts, deadline, clock_rate, level_id, active_level,
 *       transit, jitter, outputs=[(egress, ssrc, pt, seq_offset, ts_offset, extmap, hist_packets, hist_seqs,
 *                                  vp8_picture_offset=0, vp8_tl0_offset=0, vp8_key_offset=0)],
 *       tee=False) */
static int Route_init(Route *self, PyObject *args, PyObject *kwds) {
    unsigned long ssrc, last_ts;
    int pt, last_seq, level_id, active_level, tee = 0;
    double deadline, clock_rate, transit, jitter;
    PyObject *outputs;
    if (!PyArg_ParseTuple(args, "kiikddiiddO!|p", &ssrc, &pt, &last_seq, &last_ts, &deadline,
                          &clock_rate, &level_id, &active_level, &transit, &jitter, &PyList_Type,
                          &outputs, &tee))
        return -1;
    Route_clear_outputs(self);
    Py_ssize_t n = PyList_GET_SIZE(outputs);
    if (n > MAX_OUTPUTS) {
        PyErr_SetString(PyExc_ValueError, "too many outputs");
        return -1;
    }
    self->ssrc = (uint32_t)ssrc;
    self->payload_type = (uint8_t)pt;
    self->tee = tee;
    self->teed = 0;
    self->prev_seq = self->last_seq = (uint16_t)last_seq;
    self->last_ts = (uint32_t)last_ts;
    self->deadline = deadline;
    self->clock_rate = clock_rate;
    self->level_id = level_id;
    self->active_level = active_level;
    self->transit = transit;
    self->jitter = jitter;
    self->last_time = -1.0;
    self->packets = self->octets = self->wraps = self->samples = self->active_samples = 0;
    self->active_sum = 0.0;
    self->vp8_rewrite = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *egress, *hp, *hs;
        unsigned long out_ssrc, ts_offset;
        int out_pt, seq_offset, picture_offset = 0, tl0_offset = 0, key_offset = 0;
        Py_buffer extmap;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(outputs, i), "O!kiiky*O!O!|iii", &EgressType,
                              &egress, &out_ssrc, &out_pt, &seq_offset, &ts_offset, &extmap,
                              &PyList_Type, &hp, &PyList_Type, &hs, &picture_offset, &tl0_offset,
                              &key_offset))
            return -1;
        Py_ssize_t size = PyList_GET_SIZE(hp);
        if (extmap.len < 16 || size == 0 || (size & (size - 1)) || PyList_GET_SIZE(hs) != size) {
            PyBuffer_Release(&extmap);
            PyErr_SetString(PyExc_ValueError, "bad output");
            return -1;
        }
        Output *o = &self->outputs[self->n_outputs];
        memcpy(o->extmap, extmap.buf, 16);
        PyBuffer_Release(&extmap);
        Py_INCREF(egress);
        Py_INCREF(hp);
        Py_INCREF(hs);
        o->egress = (Egress *)egress;
        o->history_packets = hp;
        o->history_seqs = hs;
        o->mask = size - 1;
        o->ssrc = (uint32_t)out_ssrc;
        o->payload_type = (uint8_t)out_pt;
        o->seq_offset = (uint16_t)seq_offset;
        o->ts_offset = (uint32_t)ts_offset;
        o->vp8_picture_offset = (uint16_t)(picture_offset & 0x7FFF);
        o->vp8_tl0_offset = (uint8_t)(tl0_offset & 0xFF);
        o->vp8_key_offset = (uint8_t)(key_offset & 0x1F);
        o->vp8_rewrite = o->vp8_picture_offset || o->vp8_tl0_offset || o->vp8_key_offset;
        self->vp8_rewrite |= o->vp8_rewrite;
        self->n_outputs++;
    }
    return 0;
}

/* take() -> (packets, octets, wraps, last_seq, last_ts, last_time, transit, jitter,
 *            samples, active_samples, active_sum); resets the counters. */
static PyObject *Route_take(Route *self, PyObject *unused) {
    PyObject *r = Py_BuildValue("LLLikdddLLd", self->packets, self->octets, self->wraps,
                                (int)self->last_seq, (unsigned long)self->last_ts, self->last_time, self->transit, self->jitter,
                                self->samples, self->active_samples, self->active_sum);
    self->packets = self->octets = self->wraps = self->samples = self->active_samples = 0;
    self->active_sum = 0.0;
    return r;
}

static PyObject *Route_get_deadline(Route *self, void *c) { return PyFloat_FromDouble(self->deadline); }
static int Route_set_deadline(Route *self, PyObject *v, void *c) {
    double d = PyFloat_AsDouble(v);
    if (d == -1.0 && PyErr_Occurred()) return -1;
    self->deadline = d;
    return 0;
}
static PyObject *Route_get_ssrc(Route *self, void *c) { return PyLong_FromUnsignedLong(self->ssrc); }
static PyObject *Route_get_tee(Route *self, void *c) { return PyBool_FromLong(self->tee); }
static PyObject *Route_get_teed(Route *self, void *c) { return PyBool_FromLong(self->teed); }
static PyObject *Route_get_outputs(Route *self, void *c) { return PyLong_FromLong(self->n_outputs); }

/* transit / jitter: after Python accounted a teed packet, the receive stream's state goes back here */
static int route_set_double(PyObject *v, double *field) {
    double d = PyFloat_AsDouble(v);
    if (d == -1.0 && PyErr_Occurred()) return -1;
    *field = d;
    return 0;
}
static PyObject *Route_get_transit(Route *self, void *c) { return PyFloat_FromDouble(self->transit); }
static int Route_set_transit(Route *self, PyObject *v, void *c) { return route_set_double(v, &self->transit); }
static PyObject *Route_get_jitter(Route *self, void *c) { return PyFloat_FromDouble(self->jitter); }
static int Route_set_jitter(Route *self, PyObject *v, void *c) { return route_set_double(v, &self->jitter); }

static PyGetSetDef Route_getset[] = {
    {"deadline", (getter)Route_get_deadline, (setter)Route_set_deadline, NULL, NULL},
    {"ssrc", (getter)Route_get_ssrc, NULL, NULL, NULL},
    {"tee", (getter)Route_get_tee, NULL, NULL, NULL},
    {"teed", (getter)Route_get_teed, NULL, NULL, NULL},
    {"outputs", (getter)Route_get_outputs, NULL, NULL, NULL},
    {"transit", (getter)Route_get_transit, (setter)Route_set_transit, NULL, NULL},
    {"jitter", (getter)Route_get_jitter, (setter)Route_set_jitter, NULL, NULL},
    {NULL}};
static PyMethodDef Route_methods[] = {{"take", (PyCFunction)Route_take, METH_NOARGS, NULL}, {NULL}};

static PyTypeObject RouteType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "gateway.media._fastpath.Route",
    .tp_basicsize = sizeof(Route),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Route_init,
    .tp_dealloc = (destructor)Route_dealloc,
    .tp_getset = Route_getset,
    .tp_methods = Route_methods,
};

/* ------------------------------------------------------------------------------------ Ingress */

#define TWCC_RING 4096 /* arrivals kept between two take_arrivals(); the oldest go first */

typedef struct {
    PyObject_HEAD Session *rx;
    int n_routes;
    Route *routes[MAX_ROUTES];
    /* transport-cc (draft-holmer-rmcat-transport-wide-cc-extensions-01): arrivals of every
     * unprotected RTP packet, forwarded or handed back, for the Python side's feedback */
    int twcc_id; /* the transport-wide sequence number's RFC 8285 element id; 0 = off */
    int arrivals_start, arrivals_count;
    uint16_t arrival_seqs[TWCC_RING];
    double arrival_times[TWCC_RING];
} Ingress;

static void Ingress_clear(Ingress *self) {
    for (int i = 0; i < self->n_routes; i++) Py_CLEAR(self->routes[i]);
    self->n_routes = 0;
}

static void Ingress_dealloc(Ingress *self) {
    Ingress_clear(self);
    Py_XDECREF(self->rx);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Ingress_init(Ingress *self, PyObject *args, PyObject *kwds) {
    PyObject *rx;
    if (!PyArg_ParseTuple(args, "O!", &SessionType, &rx)) return -1;
    Ingress_clear(self);
    Py_XDECREF(self->rx);
    Py_INCREF(rx);
    self->rx = (Session *)rx;
    return 0;
}

/* install(route): replaces the route of the same SSRC; False when the table is full */
static PyObject *Ingress_install(Ingress *self, PyObject *arg) {
    if (!PyObject_TypeCheck(arg, &RouteType)) {
        PyErr_SetString(PyExc_TypeError, "expected a Route");
        return NULL;
    }
    Route *route = (Route *)arg;
    for (int i = 0; i < self->n_routes; i++) {
        if (self->routes[i]->ssrc == route->ssrc) {
            Py_INCREF(route);
            Py_SETREF(self->routes[i], route);
            Py_RETURN_TRUE;
        }
    }
    if (self->n_routes >= MAX_ROUTES) Py_RETURN_FALSE;
    Py_INCREF(route);
    self->routes[self->n_routes++] = route;
    Py_RETURN_TRUE;
}

/* remove(route): only if it is still the installed one */
static PyObject *Ingress_remove(Ingress *self, PyObject *arg) {
    for (int i = 0; i < self->n_routes; i++) {
        if ((PyObject *)self->routes[i] == arg) {
            Route *old = self->routes[i];
            self->routes[i] = self->routes[--self->n_routes];
            self->routes[self->n_routes] = NULL;
            Py_DECREF(old);
            break;
        }
    }
    Py_RETURN_NONE;
}

static PyObject *Ingress_clear_routes(Ingress *self, PyObject *unused) {
    Ingress_clear(self);
    Py_RETURN_NONE;
}

/* set_twcc(ext_id): record transport-wide sequence numbers carried in element ext_id (0 = off) */
static PyObject *Ingress_set_twcc(Ingress *self, PyObject *arg) {
    long ext_id = PyLong_AsLong(arg);
    if (ext_id == -1 && PyErr_Occurred()) return NULL;
    if (ext_id < 0 || ext_id > 255) {
        PyErr_SetString(PyExc_ValueError, "extension id must be 0-255");
        return NULL;
    }
    if (ext_id != self->twcc_id) self->arrivals_start = self->arrivals_count = 0;
    self->twcc_id = (int)ext_id;
    Py_RETURN_NONE;
}

/* take_arrivals() -> [(transport seq, CLOCK_MONOTONIC seconds)], oldest first; empties the ring */
static PyObject *Ingress_take_arrivals(Ingress *self, PyObject *unused) {
    PyObject *list = PyList_New(self->arrivals_count);
    if (list == NULL) return NULL;
    for (int k = 0; k < self->arrivals_count; k++) {
        int slot = (self->arrivals_start + k) % TWCC_RING;
        PyObject *item = Py_BuildValue("(id)", (int)self->arrival_seqs[slot], self->arrival_times[slot]);
        if (item == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, k, item);
    }
    self->arrivals_start = self->arrivals_count = 0;
    return list;
}

/* The transport-wide sequence number of a plain RTP packet (RFC 8285 one-byte or two-byte header
 * extension, element id), or -1; every read stays inside the extension and the packet. */
static int transport_seq(const unsigned char *p, int len, int id) {
    if (len < 12 || !(p[0] & 0x10)) return -1;
    int offset = 12 + 4 * (p[0] & 0x0F);
    if (offset + 4 > len) return -1;
    int profile = p[offset] << 8 | p[offset + 1];
    int i = offset + 4;
    int end = i + 4 * (p[offset + 2] << 8 | p[offset + 3]);
    if (end > len) return -1;
    if (profile == 0xBEDE) {
        while (i < end) {
            unsigned char b = p[i];
            if (b == 0) {
                i++;
                continue;
            }
            int element = b >> 4, length = (b & 0x0F) + 1;
            if (element == 15) return -1;
            if (element == id) return length >= 2 && i + 3 <= end ? p[i + 1] << 8 | p[i + 2] : -1;
            i += 1 + length;
        }
    } else if ((profile & 0xFFF0) == 0x1000) {
        while (i + 1 < end) {
            int element = p[i];
            if (element == 0) {
                i++;
                continue;
            }
            int length = p[i + 1];
            if (element == id) return length >= 2 && i + 4 <= end ? p[i + 2] << 8 | p[i + 3] : -1;
            i += 2 + length;
        }
    }
    return -1;
}

static void record_arrival(Ingress *self, const unsigned char *p, int len, double now) {
    int seq = transport_seq(p, len, self->twcc_id);
    if (seq < 0) return;
    if (self->arrivals_count == TWCC_RING) { /* full: drop the oldest */
        self->arrivals_start = (self->arrivals_start + 1) % TWCC_RING;
        self->arrivals_count--;
    }
    int slot = (self->arrivals_start + self->arrivals_count) % TWCC_RING;
    self->arrival_seqs[slot] = (uint16_t)seq;
    self->arrival_times[slot] = now;
    self->arrivals_count++;
}

static unsigned char out_bufs[MAX_OUTPUTS][BUF_SIZE + TWCC_GROWTH + SRTP_MAX_TRAILER_LEN];

/* Rewrite RFC 8285 one-byte extension ids in place (mirrors rtp.rewrite_extension_ids). */
static void rewrite_ext(unsigned char *p, int start, int end, const uint8_t *map) {
    int i = start;
    while (i < end) {
        unsigned char b = p[i];
        if (b == 0) {
            i++;
            continue;
        }
        int element = b >> 4;
        if (element == 15) {
            memset(p + i, 0, end - i);
            return;
        }
        int length = (b & 0x0F) + 1;
        int nid = map[element];
        if (nid == 0 || nid > 14) {
            int stop = i + 1 + length < end ? i + 1 + length : end;
            memset(p + i, 0, stop - i);
        } else if (nid != element) {
            p[i] = (unsigned char)(nid << 4 | (b & 0x0F));
        }
        i += 1 + length;
    }
}

/* Where a VP8 payload descriptor (RFC 7741 section 4.2) holds its PictureID, TL0PICIDX and
 * KEYIDX (mirrors payload.vp8_fields); picture_bits 0 / positions -1 where absent. */
typedef struct {
    int picture_id, picture_bits, picture_pos, tl0, tl0_pos, key_idx, key_pos;
} Vp8Fields;

static int vp8_fields(const unsigned char *data, int start, int end, Vp8Fields *f) {
    if (end - start < 2 || !(data[start] & 0x80)) return 0;
    int x = data[start + 1], i = start + 2;
    f->picture_id = f->tl0 = f->tl0_pos = f->key_idx = f->key_pos = f->picture_pos = -1;
    f->picture_bits = 0;
    if (x & 0x80) {
        if (i >= end) return 0;
        f->picture_pos = i;
        if (data[i] & 0x80) {
            if (i + 1 >= end) return 0;
            f->picture_id = (data[i] & 0x7F) << 8 | data[i + 1];
            f->picture_bits = 15;
            i += 2;
        } else {
            f->picture_id = data[i];
            f->picture_bits = 7;
            i += 1;
        }
    }
    if (x & 0x40) {
        if (i >= end) return 0;
        f->tl0 = data[i];
        f->tl0_pos = i;
        i++;
    }
    if (x & 0x10) {
        if (i >= end) return 0;
        f->key_idx = data[i] & 0x1F;
        f->key_pos = i;
    }
    return 1;
}

/* Forwarder.vp8_outgoing + payload.vp8_write_fields for one output */
static void vp8_rewrite(unsigned char *p, const Vp8Fields *f, const Output *o) {
    int mask = f->picture_bits == 7 ? 0x7F : 0x7FFF;
    int picture = (f->picture_id + o->vp8_picture_offset) & mask;
    if (f->picture_bits == 15) {
        p[f->picture_pos] = (unsigned char)(0x80 | ((picture >> 8) & 0x7F));
        p[f->picture_pos + 1] = (unsigned char)(picture & 0xFF);
    } else if (f->picture_bits == 7) {
        p[f->picture_pos] = (unsigned char)(picture & 0x7F);
    }
    if (f->tl0_pos >= 0) p[f->tl0_pos] = (unsigned char)((f->tl0 + o->vp8_tl0_offset) & 0xFF);
    if (f->key_pos >= 0)
        p[f->key_pos] = (unsigned char)((p[f->key_pos] & 0xE0) | ((f->key_idx + o->vp8_key_offset) & 0x1F));
}

static PyObject *Ingress_handle(Ingress *self, PyObject *arg) {
    char *data;
    Py_ssize_t size;
    if (PyBytes_AsStringAndSize(arg, &data, &size) < 0) return NULL;
    if (self->rx == NULL || self->rx->ctx == NULL) {
        PyErr_SetString(error_type(), "Ingress not initialised");
        return NULL;
    }
    unsigned char in[BUF_SIZE * 2 + SRTP_MAX_TRAILER_LEN];
    if (size > BUF_SIZE * 2 || size < 12) {
        PyErr_SetString(error_type(), "srtp_unprotect: bad packet length");
        return NULL;
    }
    memcpy(in, data, size);
    int len = (int)size;
    srtp_err_status_t status = L.unprotect(self->rx->ctx, in, &len);
    if (status != srtp_err_status_ok) {
        PyErr_Format(error_type(), "srtp_unprotect failed (%d)", (int)status);
        return NULL;
    }
    double now = 0.0;
    if (self->twcc_id) {
        now = monotonic_now();
        record_arrival(self, in, len, now);
    }
    if (len < 12 || self->n_routes == 0) goto slow;
    uint32_t ssrc = (uint32_t)in[8] << 24 | (uint32_t)in[9] << 16 | (uint32_t)in[10] << 8 | in[11];
    Route *route = NULL;
    for (int i = 0; i < self->n_routes; i++) {
        if (self->routes[i]->ssrc == ssrc) {
            route = self->routes[i];
            break;
        }
    }
    if (route == NULL) goto slow;
    route->teed = 0;
    unsigned char b0 = in[0], b1 = in[1];
    uint16_t seq = (uint16_t)(in[2] << 8 | in[3]);
    uint32_t ts = (uint32_t)in[4] << 24 | (uint32_t)in[5] << 16 | (uint32_t)in[6] << 8 | in[7];
    uint16_t delta = (uint16_t)(seq - route->prev_seq);
    if ((b0 >> 6) != 2 || (b0 & 0x20) || (b1 & 0x7F) != route->payload_type || delta == 0 ||
        delta > MAX_GAP || len > BUF_SIZE)
        goto slow; /* late, repeated, too far ahead, padded or another payload type */
    if (now == 0.0) now = monotonic_now();
    /* past the deadline Python has timers to run (layer checks, speakers): a tee too */
    int tee = route->tee || delta != 1 || now >= route->deadline;
    int ext_start = 0, ext_end = 0, level = -1;
    if (b0 & 0x10) {
        int offset = 12 + 4 * (b0 & 0x0F);
        if (offset + 4 > len) goto slow;
        int profile = in[offset] << 8 | in[offset + 1];
        int words = in[offset + 2] << 8 | in[offset + 3];
        ext_start = offset + 4;
        ext_end = ext_start + 4 * words;
        if (profile != 0xBEDE || ext_end > len) goto slow;
        if (route->level_id && !tee) {
            int i = ext_start;
            while (i < ext_end) {
                unsigned char b = in[i];
                if (b == 0) {
                    i++;
                    continue;
                }
                int element = b >> 4;
                if (element == 15) break;
                int length = (b & 0x0F) + 1;
                if (element == route->level_id) {
                    if (i + 1 < len) level = in[i + 1] & 0x7F;
                    break;
                }
                i += 1 + length;
            }
        }
    }
    if (!tee) { /* account the packet (ReceiveStream.on_packet for the next in-order packet) */
        if (seq < route->prev_seq) route->wraps++;
        route->last_seq = seq;
        route->last_ts = ts;
        route->last_time = now;
        route->packets++;
        route->octets += len - 12;
        double transit = now * route->clock_rate - (double)ts;
        double d = fabs(transit - route->transit);
        route->transit = transit;
        route->jitter += (d - route->jitter) / 16.0;
        if (level >= 0) {
            route->samples++;
            if (level <= route->active_level) {
                route->active_samples++;
                route->active_sum += pow(10.0, -level / 20.0);
            }
        }
    }
    route->prev_seq = seq;
    Vp8Fields vp8;
    int has_vp8 = 0;
    if (route->vp8_rewrite) {
        int payload = ext_end ? ext_end : 12 + 4 * (b0 & 0x0F);
        has_vp8 = payload < len && vp8_fields(in, payload, len, &vp8);
    }
    struct mmsghdr msgs[MAX_OUTPUTS];
    struct iovec iov[MAX_OUTPUTS];
    int count = 0, fd = -1;
    for (int k = 0; k < route->n_outputs; k++) {
        Output *o = &route->outputs[k];
        unsigned char *p = out_bufs[count];
        memcpy(p, in, len);
        uint16_t out_seq = (uint16_t)(seq + o->seq_offset);
        uint32_t out_ts = ts + o->ts_offset;
        p[1] = (unsigned char)((b1 & 0x80) | o->payload_type);
        p[2] = out_seq >> 8;
        p[3] = out_seq & 0xFF;
        p[4] = out_ts >> 24;
        p[5] = (out_ts >> 16) & 0xFF;
        p[6] = (out_ts >> 8) & 0xFF;
        p[7] = out_ts & 0xFF;
        p[8] = o->ssrc >> 24;
        p[9] = (o->ssrc >> 16) & 0xFF;
        p[10] = (o->ssrc >> 8) & 0xFF;
        p[11] = o->ssrc & 0xFF;
        if (ext_end) rewrite_ext(p, ext_start, ext_end, o->extmap);
        if (has_vp8 && o->vp8_rewrite) vp8_rewrite(p, &vp8, o);
        /* SendHistory.put(out_seq, plain packet) */
        PyObject *plain = PyBytes_FromStringAndSize((char *)p, len);
        PyObject *seqobj = PyLong_FromLong(out_seq);
        if (plain == NULL || seqobj == NULL) {
            Py_XDECREF(plain);
            Py_XDECREF(seqobj);
            return NULL;
        }
        Py_ssize_t slot = out_seq & o->mask;
        PyList_SetItem(o->history_packets, slot, plain);
        PyList_SetItem(o->history_seqs, slot, seqobj);
        Egress *eg = o->egress;
        if (eg->fd < 0 || eg->tx == NULL || eg->tx->ctx == NULL) continue;
        int n = egress_stamp(eg, p, len, BUF_SIZE + TWCC_GROWTH, now);
        if (L.protect(eg->tx->ctx, p, &n) != srtp_err_status_ok) continue;
        iov[count].iov_base = p;
        iov[count].iov_len = (size_t)n;
        memset(&msgs[count], 0, sizeof(struct mmsghdr));
        msgs[count].msg_hdr.msg_name = &eg->addr;
        msgs[count].msg_hdr.msg_namelen = sizeof(eg->addr);
        msgs[count].msg_hdr.msg_iov = &iov[count];
        msgs[count].msg_hdr.msg_iovlen = 1;
        eg->sent++;
        fd = eg->fd; /* every egress shares the relay's one socket */
        count++;
    }
    int sent = 0;
    while (sent < count) {
        int r = sendmmsg(fd, msgs + sent, (unsigned int)(count - sent), MSG_DONTWAIT);
        if (r <= 0) {
            if (r < 0 && errno == EINTR) continue;
            break; /* a full socket buffer drops, as UDP does */
        }
        sent += r;
    }
    if (!tee) Py_RETURN_NONE;
    route->teed = 1;
slow:
    return PyBytes_FromStringAndSize((char *)in, len);
}

static PyObject *Ingress_get_routes(Ingress *self, void *c) { return PyLong_FromLong(self->n_routes); }
static PyGetSetDef Ingress_getset[] = {{"routes", (getter)Ingress_get_routes, NULL, NULL, NULL}, {NULL}};

static PyMethodDef Ingress_methods[] = {
    {"handle", (PyCFunction)Ingress_handle, METH_O, NULL},
    {"install", (PyCFunction)Ingress_install, METH_O, NULL},
    {"remove", (PyCFunction)Ingress_remove, METH_O, NULL},
    {"clear", (PyCFunction)Ingress_clear_routes, METH_NOARGS, NULL},
    {"set_twcc", (PyCFunction)Ingress_set_twcc, METH_O, NULL},
    {"take_arrivals", (PyCFunction)Ingress_take_arrivals, METH_NOARGS, NULL},
    {NULL}};

static PyTypeObject IngressType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "gateway.media._fastpath.Ingress",
    .tp_basicsize = sizeof(Ingress),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Ingress_init,
    .tp_dealloc = (destructor)Ingress_dealloc,
    .tp_getset = Ingress_getset,
    .tp_methods = Ingress_methods,
};

/* ------------------------------------------------------------------------------------- module */

/* configure(error_type, path of a shared object exporting libsrtp 2.x, e.g. pylibsrtp's binding) */
static PyObject *configure(PyObject *self, PyObject *args) {
    PyObject *error;
    const char *path;
    if (!PyArg_ParseTuple(args, "Os", &error, &path)) return NULL;
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        PyErr_Format(PyExc_ImportError, "cannot load libsrtp from %s: %s", path, dlerror());
        return NULL;
    }
#define SYM(field, name)                                                                      \
    *(void **)(&L.field) = dlsym(handle, name);                                               \
    if (L.field == NULL) {                                                                    \
        memset(&L, 0, sizeof(L));                                                             \
        PyErr_Format(PyExc_ImportError, "%s has no %s", path, name);                          \
        return NULL;                                                                          \
    }
    SYM(create, "srtp_create")
    SYM(dealloc, "srtp_dealloc")
    SYM(policy_rtp, "srtp_crypto_policy_set_from_profile_for_rtp")
    SYM(policy_rtcp, "srtp_crypto_policy_set_from_profile_for_rtcp")
    SYM(protect, "srtp_protect")
    SYM(unprotect, "srtp_unprotect")
    SYM(protect_rtcp, "srtp_protect_rtcp")
    SYM(unprotect_rtcp, "srtp_unprotect_rtcp")
#undef SYM
    /* No srtp_init() here: pylibsrtp ran it at import, and a second call fails (its debug
     * modules are registered once). */
    Py_INCREF(error);
    Py_XSETREF(SrtpError, error);
    Py_RETURN_NONE;
}

/* set_clock(seconds): the fast path's clock reads this fixed time from now on (tests that compare
 * the native and Python paths packet for packet); set_clock(-1) goes back to CLOCK_MONOTONIC. */
static PyObject *set_clock(PyObject *self, PyObject *arg) {
    double t = PyFloat_AsDouble(arg);
    if (t == -1.0 && PyErr_Occurred()) return NULL;
    fixed_clock = t < 0.0 ? -1.0 : t;
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"configure", configure, METH_VARARGS, NULL},
    {"set_clock", set_clock, METH_O, NULL},
    {NULL}};

static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT, "_fastpath", NULL, -1, module_methods};

PyMODINIT_FUNC PyInit__fastpath(void) {
    PyTypeObject *types[] = {&SessionType, &EgressType, &RouteType, &IngressType};
    const char *names[] = {"Session", "Egress", "Route", "Ingress"};
    for (int i = 0; i < 4; i++)
        if (PyType_Ready(types[i]) < 0) return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL) return NULL;
    for (int i = 0; i < 4; i++) {
        Py_INCREF(types[i]);
        if (PyModule_AddObject(m, names[i], (PyObject *)types[i]) < 0) return NULL;
    }
    PyModule_AddIntConstant(m, "MAX_OUTPUTS", MAX_OUTPUTS);
    PyModule_AddIntConstant(m, "MAX_ROUTES", MAX_ROUTES);
    PyModule_AddIntConstant(m, "MAX_GAP", MAX_GAP);
    return m;
}
