/*
 * HailoRT test double (hailo-clip): the C types and functions of HailoRT's hailort.h that
 * src/backends/hailo/shim.cpp uses, with the same names. Written for hailo-clip's tests;
 * it declares only that subset. Enumerator values match the real header so status numbers
 * in messages read the same.
 */
#ifndef HAILO_CLIP_FAKE_HAILORT_H
#define HAILO_CLIP_FAKE_HAILORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HAILO_MAX_DEVICE_ID_LENGTH (32)

typedef float float32_t;

typedef enum {
    HAILO_SUCCESS = 0,
    HAILO_UNINITIALIZED = 1,
    HAILO_INVALID_ARGUMENT = 2,
    HAILO_OUT_OF_HOST_MEMORY = 3,
    HAILO_TIMEOUT = 4,
    HAILO_INVALID_OPERATION = 6,
    HAILO_NOT_IMPLEMENTED = 7,
    HAILO_INTERNAL_FAILURE = 8,
    HAILO_OPEN_FILE_FAILURE = 13,
    HAILO_FILE_OPERATION_FAILURE = 14,
    HAILO_INVALID_HEF = 26,
    HAILO_PCIE_NOT_SUPPORTED_ON_PLATFORM = 27,
    HAILO_DRIVER_OPERATION_FAILED = 36,
    HAILO_NOT_FOUND = 61,
    HAILO_COMMUNICATION_CLOSED = 62,
    HAILO_STREAM_ABORT = 63,
    HAILO_DRIVER_NOT_INSTALLED = 64,
    HAILO_DEVICE_IN_USE = 73,
    HAILO_INVALID_DRIVER_VERSION = 76,
    HAILO_OUT_OF_PHYSICAL_DEVICES = 74,
    HAILO_HEF_FILE_CORRUPTED = 91,
    HAILO_HEF_NOT_SUPPORTED = 92,
    HAILO_HEF_NOT_COMPATIBLE_WITH_DEVICE = 93,
    HAILO_DRIVER_INVALID_RESPONSE = 85,
    HAILO_DRIVER_INVALID_IOCTL = 86,
    HAILO_DRIVER_TIMEOUT = 87,
    HAILO_DRIVER_INTERRUPTED = 88,
    HAILO_DRIVER_WAIT_CANCELED = 90,
    HAILO_CONNECTION_REFUSED = 89,
    HAILO_DEVICE_NOT_CONNECTED = 96,
    HAILO_DEVICE_TEMPORARILY_UNAVAILABLE = 97,
} hailo_status;

typedef struct {
    uint32_t major;
    uint32_t minor;
    uint32_t revision;
} hailo_version_t;

typedef struct {
    char id[HAILO_MAX_DEVICE_ID_LENGTH];
} hailo_device_id_t;

typedef enum {
    HAILO_DMA_BUFFER_DIRECTION_H2D = 0,
    HAILO_DMA_BUFFER_DIRECTION_D2H = 1,
    HAILO_DMA_BUFFER_DIRECTION_BOTH = 2,
} hailo_dma_buffer_direction_t;

typedef enum {
    HAILO_SCHEDULING_ALGORITHM_NONE = 0,
    HAILO_SCHEDULING_ALGORITHM_ROUND_ROBIN = 1,
} hailo_scheduling_algorithm_t;

typedef struct {
    uint32_t device_count;
    hailo_device_id_t *device_ids;
    hailo_scheduling_algorithm_t scheduling_algorithm;
    const char *group_id;
    bool multi_process_service;
} hailo_vdevice_params_t;

typedef enum {
    HAILO_FORMAT_TYPE_AUTO = 0,
    HAILO_FORMAT_TYPE_UINT8 = 1,
    HAILO_FORMAT_TYPE_UINT16 = 2,
    HAILO_FORMAT_TYPE_FLOAT32 = 3,
} hailo_format_type_t;

typedef enum {
    HAILO_FORMAT_ORDER_AUTO = 0,
    HAILO_FORMAT_ORDER_NHWC = 1,
    HAILO_FORMAT_ORDER_NHW = 5,
    HAILO_FORMAT_ORDER_NC = 6,
    HAILO_FORMAT_ORDER_NCHW = 11,
} hailo_format_order_t;

typedef enum {
    HAILO_FORMAT_FLAGS_NONE = 0,
} hailo_format_flags_t;

typedef struct {
    hailo_format_type_t type;
    hailo_format_order_t order;
    hailo_format_flags_t flags;
} hailo_format_t;

typedef struct {
    float32_t qp_zp;
    float32_t qp_scale;
    float32_t limvals_min;
    float32_t limvals_max;
} hailo_quant_info_t;

typedef struct {
    uint32_t height;
    uint32_t width;
    uint32_t features;
} hailo_3d_image_shape_t;

hailo_status hailo_get_library_version(hailo_version_t *version);
const char *hailo_get_status_message(hailo_status status);
#define HAILO_MAX_BOARD_NAME_LENGTH (32)
#define HAILO_MAX_SERIAL_NUMBER_LENGTH (16)
#define HAILO_MAX_PART_NUMBER_LENGTH (16)
#define HAILO_MAX_PRODUCT_NAME_LENGTH (42)

typedef enum hailo_device_architecture_e {
    HAILO_ARCH_HAILO8_A0 = 0,
    HAILO_ARCH_HAILO8,
    HAILO_ARCH_HAILO8L,
    HAILO_ARCH_HAILO15H,
    HAILO_ARCH_HAILO15L,
    HAILO_ARCH_HAILO15M,
    HAILO_ARCH_HAILO10H,
    HAILO_ARCH_HAILO12L,
} hailo_device_architecture_t;

typedef struct {
    uint32_t major;
    uint32_t minor;
    uint32_t revision;
} hailo_firmware_version_t;

typedef struct {
    uint32_t protocol_version;
    hailo_firmware_version_t fw_version;
    uint32_t logger_version;
    uint8_t board_name_length;
    char board_name[HAILO_MAX_BOARD_NAME_LENGTH];
    bool is_release;
    bool extended_context_switch_buffer;
    bool extended_fw_check;
    hailo_device_architecture_t device_architecture;
    uint8_t serial_number_length;
    char serial_number[HAILO_MAX_SERIAL_NUMBER_LENGTH];
    uint8_t part_number_length;
    char part_number[HAILO_MAX_PART_NUMBER_LENGTH];
    uint8_t product_name_length;
    char product_name[HAILO_MAX_PRODUCT_NAME_LENGTH];
} hailo_device_identity_t;

typedef struct {
    float32_t ts0_temperature;
    float32_t ts1_temperature;
    uint16_t sample_count;
} hailo_chip_temperature_info_t;

typedef struct {
    float32_t cpu_utilization;
    int64_t ram_size_total;
    int64_t ram_size_used;
    float32_t nnc_utilization;
    int32_t ddr_noc_total_transactions;
    int32_t dsp_utilization;
} hailo_performance_stats_t;

typedef enum {
    HAILO_NOTIFICATION_ID_ETHERNET_RX_ERROR = 0,
    HAILO_NOTIFICATION_ID_HEALTH_MONITOR_TEMPERATURE_ALARM,
    HAILO_NOTIFICATION_ID_HEALTH_MONITOR_DATAFLOW_SHUTDOWN,
    HAILO_NOTIFICATION_ID_HEALTH_MONITOR_OVERCURRENT_ALARM,
    HAILO_NOTIFICATION_ID_LCU_ECC_CORRECTABLE_ERROR,
    HAILO_NOTIFICATION_ID_LCU_ECC_UNCORRECTABLE_ERROR,
    HAILO_NOTIFICATION_ID_CPU_ECC_ERROR,
    HAILO_NOTIFICATION_ID_CPU_ECC_FATAL,
    HAILO_NOTIFICATION_ID_DEBUG,
    HAILO_NOTIFICATION_ID_CONTEXT_SWITCH_BREAKPOINT_REACHED,
    HAILO_NOTIFICATION_ID_HEALTH_MONITOR_CLOCK_CHANGED_EVENT,
    HAILO_NOTIFICATION_ID_HW_INFER_MANAGER_INFER_DONE,
    HAILO_NOTIFICATION_ID_CONTEXT_SWITCH_RUN_TIME_ERROR_EVENT,
    HAILO_NOTIFICATION_ID_NN_CORE_CRC_ERROR_EVENT,
    HAILO_NOTIFICATION_ID_THROTTLING_STATE_CHANGE_EVENT,
    HAILO_NOTIFICATION_ID_COUNT,
} hailo_notification_id_t;

#pragma pack(push, 1)
typedef struct {
    uint16_t new_state;
} hailo_throttling_state_change_message_t;

/* The members the double sends; HailoRT's union has more, all starting at offset 0. */
typedef union {
    hailo_throttling_state_change_message_t throttling_state_change;
    uint8_t raw[64];
} hailo_notification_message_parameters_t;

typedef struct {
    hailo_notification_id_t id;
    uint32_t sequence;
    hailo_notification_message_parameters_t body;
} hailo_notification_t;
#pragma pack(pop)

hailo_status hailo_init_vdevice_params(hailo_vdevice_params_t *params);

#ifdef __cplusplus
}
#endif

#endif
