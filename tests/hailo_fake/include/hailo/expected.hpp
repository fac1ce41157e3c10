// HailoRT test double (hailo-clip): Expected<T> / make_unexpected with the public interface
// the shim uses (bool test, status(), value(), release(), ->, *). Written for the tests.
#ifndef HAILO_CLIP_FAKE_EXPECTED_HPP
#define HAILO_CLIP_FAKE_EXPECTED_HPP

#include "hailo/hailort.h"

#include <cassert>
#include <optional>
#include <utility>

namespace hailort
{

class Unexpected final
{
public:
    explicit Unexpected(hailo_status status) : m_status(status) {}
    hailo_status m_status;
};

inline Unexpected make_unexpected(hailo_status status)
{
    return Unexpected(status);
}

template <typename T>
class Expected final
{
public:
    Expected(Unexpected unexpected) : m_status(unexpected.m_status) { assert(m_status != HAILO_SUCCESS); }
    Expected(T &&value) : m_value(std::move(value)), m_status(HAILO_SUCCESS) {}
    Expected(const T &value) : m_value(value), m_status(HAILO_SUCCESS) {}
    Expected(Expected &&other) = default;
    Expected &operator=(const Expected &) = delete;

    bool has_value() const { return m_status == HAILO_SUCCESS; }
    explicit operator bool() const { return has_value(); }
    hailo_status status() const { return m_status; }

    T &value() & { assert(has_value()); return *m_value; }
    const T &value() const & { assert(has_value()); return *m_value; }
    T release()
    {
        assert(has_value());
        T out = std::move(*m_value);
        m_value.reset();
        m_status = HAILO_UNINITIALIZED;
        return out;
    }

    T *operator->() { return &value(); }
    const T *operator->() const { return &value(); }
    T &operator*() & { return value(); }
    const T &operator*() const & { return value(); }

private:
    std::optional<T> m_value;
    hailo_status m_status;
};

} // namespace hailort

#endif
