/* The names of dta_format: the strings dta_file.format and dta_model.format hold and the
 * reports print. Apart from the reader table (format.c), so that the model and the readers
 * name formats without depending on the table that calls them. */
#include "dtaudit/model.h"

static const char *const format_names[DTA_FORMAT_COUNT] = {
    [DTA_FORMAT_UNKNOWN] = "unknown",
    [DTA_FORMAT_SAFETENSORS] = "safetensors",
    [DTA_FORMAT_TORCH_ZIP] = "torch-zip",
    [DTA_FORMAT_TORCHSCRIPT] = "torchscript",
    [DTA_FORMAT_TORCH_LEGACY] = "torch-legacy",
    [DTA_FORMAT_INDEX] = "index",
    [DTA_FORMAT_SAFETENSORS_INDEX] = "safetensors-index",
    [DTA_FORMAT_TORCH_INDEX] = "torch-index",
    [DTA_FORMAT_DIRECTORY] = "directory",
};

const char *dta_format_name(dta_format f)
{
    return (unsigned)f < DTA_FORMAT_COUNT ? format_names[f] : format_names[DTA_FORMAT_UNKNOWN];
}
