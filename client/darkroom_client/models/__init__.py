"""Contains all the data models used in inputs/outputs"""

from .error_body import ErrorBody
from .error_response import ErrorResponse
from .generate_request import GenerateRequest
from .generate_request_decoder import GenerateRequestDecoder
from .generate_request_output_format import GenerateRequestOutputFormat
from .generate_response import GenerateResponse
from .generate_response_format import GenerateResponseFormat
from .generation_metadata import GenerationMetadata
from .health import Health
from .job_created import JobCreated
from .job_created_status import JobCreatedStatus
from .job_status import JobStatus
from .job_status_status import JobStatusStatus
from .model_info import ModelInfo
from .model_info_decoders_item import ModelInfoDecodersItem
from .models_response import ModelsResponse
from .open_ai_image import OpenAIImage
from .open_ai_images_request import OpenAIImagesRequest
from .open_ai_images_request_output_format import OpenAIImagesRequestOutputFormat
from .open_ai_images_request_response_format import OpenAIImagesRequestResponseFormat
from .open_ai_images_response import OpenAIImagesResponse
from .sampler_info import SamplerInfo
from .timings import Timings

__all__ = (
    "ErrorBody",
    "ErrorResponse",
    "GenerateRequest",
    "GenerateRequestDecoder",
    "GenerateRequestOutputFormat",
    "GenerateResponse",
    "GenerateResponseFormat",
    "GenerationMetadata",
    "Health",
    "JobCreated",
    "JobCreatedStatus",
    "JobStatus",
    "JobStatusStatus",
    "ModelInfo",
    "ModelInfoDecodersItem",
    "ModelsResponse",
    "OpenAIImage",
    "OpenAIImagesRequest",
    "OpenAIImagesRequestOutputFormat",
    "OpenAIImagesRequestResponseFormat",
    "OpenAIImagesResponse",
    "SamplerInfo",
    "Timings",
)
