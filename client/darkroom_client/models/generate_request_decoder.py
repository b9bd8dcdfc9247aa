from enum import StrEnum


class GenerateRequestDecoder(StrEnum):
    FULL = "full"
    TINY = "tiny"

    def __str__(self) -> str:
        return str(self.value)
