// HailoRT test double (hailo-clip): MemoryView, a non-owning pointer and size.
#ifndef HAILO_CLIP_FAKE_BUFFER_HPP
#define HAILO_CLIP_FAKE_BUFFER_HPP

#include <cstddef>
#include <cstdint>

namespace hailort
{

class MemoryView final
{
public:
    MemoryView() noexcept : m_data(nullptr), m_size(0) {}
    MemoryView(void *data, size_t size) noexcept : m_data(static_cast<uint8_t *>(data)), m_size(size) {}

    uint8_t *data() noexcept { return m_data; }
    const uint8_t *data() const noexcept { return m_data; }
    size_t size() const noexcept { return m_size; }
    bool empty() const noexcept { return m_size == 0; }

private:
    uint8_t *m_data;
    size_t m_size;
};

} // namespace hailort

#endif
