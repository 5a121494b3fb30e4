/*
 * bytes: fixed-width integers in and out of byte buffers, in one place for
 * the state's records (big-endian: RocksDB's byte order is then numeric
 * order), the changelog and the item-sync records (little-endian, as their
 * floats are written).
 */
#ifndef STREAMREC_BYTES_H
#define STREAMREC_BYTES_H

#include <stdint.h>

static inline void bytes_put_be32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static inline uint32_t bytes_get_be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void bytes_put_be64(unsigned char *p, uint64_t v)
{
	bytes_put_be32(p, (uint32_t)(v >> 32));
	bytes_put_be32(p + 4, (uint32_t)v);
}

static inline uint64_t bytes_get_be64(const unsigned char *p)
{
	return (uint64_t)bytes_get_be32(p) << 32 | bytes_get_be32(p + 4);
}

static inline void bytes_put_le32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

static inline uint32_t bytes_get_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

#endif
