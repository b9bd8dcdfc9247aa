from enum import StrEnum


class OpenAIImagesRequestResponseFormat(StrEnum):
    B64_JSON = "b64_json"
    URL = "url"

    def __str__(self) -> str:
        return str(self.value)
