package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// The body of a delivery in layout 2: deliveryMagic, the length of Herald's fields, the
// fields, then the event's data to the end. The magic's first byte is 0, which no JSON
// document (and no body of the layouts before, whose fields were headers) starts with.
var deliveryMagic = [...]byte{0, 'H', 2}

// encode appends d's stored form to buf.
func (d *Delivery) encode(buf []byte) []byte {
	var meta [512]byte
	m := meta[:0]
	for _, s := range [...]string{d.Namespace, d.Endpoint, d.EventID, d.EventType, d.EventSource, d.CreatedAtText,
		d.TraceParent, d.TraceState, d.DeliveryID} {
		m = binary.AppendUvarint(m, uint64(len(s)))
		m = append(m, s...)
	}
	m = binary.AppendVarint(m, d.CreatedAt.Unix())
	m = binary.AppendUvarint(m, uint64(d.CreatedAt.Nanosecond()))
	m = binary.AppendUvarint(m, uint64(max(d.Attempt, 0)))
	m = binary.AppendVarint(m, unixMicro(d.NotBefore))
	m = binary.AppendVarint(m, unixMicro(d.AcceptedAt))
	m = binary.AppendUvarint(m, uint64(max(d.Replay, 0)))
	// Last, and optional to the decoder: bodies written before it was added end here.
	m = binary.AppendUvarint(m, uint64(len(d.Attributes)))
	m = append(m, d.Attributes...)
	if buf == nil {
		buf = make([]byte, 0, len(deliveryMagic)+binary.MaxVarintLen32+len(m)+len(d.Data))
	} else {
		buf = slices.Grow(buf, len(deliveryMagic)+binary.MaxVarintLen32+len(m)+len(d.Data))
	}
	buf = append(buf, deliveryMagic[:]...)
	buf = binary.AppendUvarint(buf, uint64(len(m)))
	buf = append(buf, m...)
	return append(buf, d.Data...)
}

// unixMicro is t in microseconds, 0 for the zero time (none). Microseconds: milliseconds
// would truncate a retry wait by up to 1ms, and a retry could go out before its
// schedule said.
func unixMicro(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromMicro(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us)
}

// isEncodedDelivery reports whether body is a delivery of layout 2.
func isEncodedDelivery(body []byte) bool {
	return len(body) > len(deliveryMagic) && [3]byte(body[:3]) == deliveryMagic
}

var errBadDelivery = errors.New("malformed Herald delivery")

// decodeDelivery reads a body written by encode (everything but the endpoint's UID,
// which is in the subject). The data aliases body; Herald's fields share one string of
// their own, so that keeping a delivery's id keeps neither the body nor the batch it
// was read from.
func decodeDelivery(body []byte) (Delivery, error) {
	var d Delivery
	if !isEncodedDelivery(body) {
		return d, errNotADelivery
	}
	b := body[len(deliveryMagic):]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return d, errBadDelivery
	}
	meta, data := string(b[k:k+int(n)]), b[k+int(n):]
	r := reader{s: meta}
	for _, f := range [...]*string{&d.Namespace, &d.Endpoint, &d.EventID, &d.EventType, &d.EventSource, &d.CreatedAtText,
		&d.TraceParent, &d.TraceState, &d.DeliveryID} {
		*f = r.str()
	}
	sec, nsec := r.varint(), r.uvarint()
	d.CreatedAt = time.Unix(sec, int64(nsec)).UTC()
	d.Attempt = int(r.uvarint())
	d.NotBefore = fromMicro(r.varint())
	d.AcceptedAt = fromMicro(r.varint())
	d.Replay = int(r.uvarint())
	if r.s != "" {
		if a := r.str(); a != "" {
			d.Attributes = []byte(a)
		}
	}
	if r.bad || d.Namespace == "" || d.Endpoint == "" || d.EventID == "" || d.DeliveryID == "" || d.Attempt < 1 {
		return d, fmt.Errorf("%w (delivery %q)", errBadDelivery, d.DeliveryID)
	}
	d.Data = data
	return d, nil
}

// reader reads the fields of encode's meta; bad is set, and zero values returned, once
// anything is out of bounds.
type reader struct {
	s   string
	bad bool
}

func (r *reader) uvarint() uint64 {
	var x uint64
	var shift uint
	for i := 0; i < len(r.s) && i < binary.MaxVarintLen64; i++ {
		c := r.s[i]
		if c < 0x80 {
			r.s = r.s[i+1:]
			return x | uint64(c)<<shift
		}
		x |= uint64(c&0x7f) << shift
		shift += 7
	}
	r.bad = true
	return 0
}

func (r *reader) varint() int64 {
	ux := r.uvarint()
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x
}

func (r *reader) str() string {
	n := r.uvarint()
	if n > uint64(len(r.s)) {
		r.bad = true
		return ""
	}
	s := r.s[:n]
	r.s = r.s[n:]
	return s
}

// appendJSON appends r as JSON, as encoding/json writes it but for the escaping of <, >
// and &, which JSON does not need: by hand, as it is written for every attempt.
func (r *AttemptRecord) appendJSON(b []byte) []byte {
	b = append(b, `{"namespace":`...)
	b = appendJSONString(b, r.Namespace)
	b = append(b, `,"endpoint":`...)
	b = appendJSONString(b, r.Endpoint)
	if r.EndpointUID != "" {
		b = append(b, `,"endpointUid":`...)
		b = appendJSONString(b, r.EndpointUID)
	}
	b = append(b, `,"eventId":`...)
	b = appendJSONString(b, r.EventID)
	b = append(b, `,"eventType":`...)
	b = appendJSONString(b, r.EventType)
	b = append(b, `,"deliveryId":`...)
	b = appendJSONString(b, r.DeliveryID)
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(r.Attempt), 10)
	if r.Replay != 0 {
		b = append(b, `,"replay":`...)
		b = strconv.AppendInt(b, int64(r.Replay), 10)
	}
	b = append(b, `,"time":"`...)
	b = r.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","durationMicros":`...)
	b = strconv.AppendInt(b, r.DurationMicros, 10)
	if r.StatusCode != 0 {
		b = append(b, `,"statusCode":`...)
		b = strconv.AppendInt(b, int64(r.StatusCode), 10)
	}
	if r.Error != "" {
		b = append(b, `,"error":`...)
		b = appendJSONString(b, r.Error)
	}
	if len(r.Headers) > 0 {
		b = append(b, `,"headers":{`...)
		for i, k := range slices.Sorted(maps.Keys(r.Headers)) {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSONString(b, r.Headers[k])
		}
		b = append(b, '}')
	}
	if r.Body != "" {
		b = append(b, `,"body":`...)
		b = appendJSONString(b, r.Body)
	}
	if r.Final {
		b = append(b, `,"final":true`...)
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string; invalid UTF-8 becomes U+FFFD, as
// encoding/json writes it.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
