from enum import StrEnum


class ModelInfoDecodersItem(StrEnum):
    FULL = "full"
    TINY = "tiny"

    def __str__(self) -> str:
        return str(self.value)
